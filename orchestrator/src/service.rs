//! The gRPC implementation of `smb.orchestrator.v1.OrchestratorService`: cache → understand → plan →
//! execute → answer, then the `user.query.submitted` event.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tracing::Instrument;

use base64::Engine;
use chrono::{DateTime, NaiveDate, Utc};
use serde_json::{Value as Json, json};
use sha2::{Digest, Sha256};
use smb_core::bus::{DynBus, Envelope, Message, topics};
use smb_core::cache::{DynCache, keys};
use smb_core::ids::{Currency, TenantId};
use smb_core::store::Db;
use smb_core::tenant::Caller;
use smb_core::{Error, with_global};
use smb_proto::orchestrator::v1 as pb;
use smb_proto::orchestrator::v1::orchestrator_service_server::OrchestratorService;
use smb_proto::orchestrator::v1::process_response::Result as Structured;
use tonic::{Request, Response, Status};

use crate::answer::{count, definition, definition_for, describe, label, money};
use crate::metrics::{self, Filter, Value};
use crate::nlu::{
    self, Catalog, Comparison, Conversation, Grain, Intent, MentionKind, Metric, Plan,
};
use crate::period::{Kind, Period, add_months, month_start, quarter_start, week_start};

pub const MAX_QUERY_CHARS: usize = 2000;

pub struct OrchestratorServiceImpl {
    db: Db,
    cache: DynCache,
    cache_ttl: Duration,
    /// Tenant settings (time zone, currency) read at most once a minute per tenant.
    tenants: Mutex<HashMap<TenantId, (Instant, Tenant)>>,
    /// `user.query.submitted` events, published off the answer path by a background task in batches.
    events: tokio::sync::mpsc::Sender<Message>,
    /// Per tenant: the product titles and customer names questions are matched against, with the data
    /// version they were read at (a sync bumps the version, so they are re-read after new data).
    vocab: Arc<Mutex<HashMap<TenantId, VocabEntry>>>,
    /// Search over the tenant's records (none: searches are answered as unavailable).
    search: Option<Arc<smb_search::SearchEngine>>,
    /// Actions (ops-copilot); none: action requests are answered as unavailable.
    ops: Option<Arc<crate::ops::Ops>>,
    /// The language-model chain; none: every answer is the deterministic one.
    llm: Option<Arc<crate::llm::Chain>>,
    /// Put the question's text on answer spans (`telemetry.log_queries`); otherwise a hash of it.
    log_queries: bool,
}

struct VocabEntry {
    version: String,
    vocab: Arc<Vocab>,
    refreshing: bool,
}

async fn load_vocab(db: &Db, id: &TenantId) -> Result<Vocab, Error> {
    let titles = metrics::product_titles(db, id).await?;
    Ok(Vocab {
        catalog: Catalog::new(&titles, metrics::customer_names(db, id).await?),
        sources: metrics::sources(db, id).await?,
        currencies: metrics::currencies(db, id).await?,
    })
}

/// What a question's words are matched against, and which sources the data comes from.
struct Vocab {
    catalog: Catalog,
    /// Connected sources: (kind, last successful sync in ms).
    sources: Vec<(String, Option<i64>)>,
    /// The currencies the tenant's orders are in.
    currencies: Vec<String>,
}

impl Vocab {
    fn synced(&self) -> bool {
        self.sources.iter().any(|(_, at)| at.is_some())
    }
}

const TENANT_TTL: Duration = Duration::from_secs(60);

/// Publishes query events in batches; a full queue makes answers wait rather than lose events. A batch
/// gathers for up to `EVENT_LINGER` after its first event, so under load one write carries hundreds of
/// events instead of a handful (each write is a transaction and a wake-up of the store's thread).
async fn publish_events(bus: DynBus, mut rx: tokio::sync::mpsc::Receiver<Message>) {
    const MAX: usize = 512;
    const EVENT_LINGER: Duration = Duration::from_millis(50);
    let mut batch = Vec::with_capacity(MAX);
    while rx.recv_many(&mut batch, MAX).await > 0 {
        let deadline = tokio::time::Instant::now() + EVENT_LINGER;
        while batch.len() < MAX {
            let left = MAX - batch.len();
            match tokio::time::timeout_at(deadline, rx.recv_many(&mut batch, left)).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        if let Err(e) = bus.publish(&batch).await {
            tracing::warn!(error = %e, events = batch.len(), "query events not published");
        }
        batch.clear();
    }
}

#[derive(Clone)]
struct Tenant {
    name: String,
    tz: chrono_tz::Tz,
    currency: Currency,
}

/// What one question produced.
struct Answer {
    answer: String,
    intent: Intent,
    module: pb::Module,
    result: Structured,
    plan: Vec<Json>,
}

impl Answer {
    /// The result as the answer contract shows it: what a model phrasing the answer is given.
    fn result_json(&self) -> Json {
        smb_proto::json::result(Some(&self.result), None)
    }
}

fn searched(s: crate::search::Searched) -> Answer {
    Answer {
        answer: s.answer,
        intent: Intent::Search,
        module: pb::Module::MiniFoundry,
        result: Structured::Search(s.result),
        plan: s.steps,
    }
}

fn intent_pb(i: Intent) -> pb::Intent {
    match i {
        Intent::Metrics => pb::Intent::Metrics,
        Intent::Search => pb::Intent::Search,
        Intent::Action => pb::Intent::Action,
        Intent::Conversation => pb::Intent::Conversation,
    }
}

fn grain_pb(g: Grain) -> pb::Grain {
    match g {
        Grain::Day => pb::Grain::Day,
        Grain::Week => pb::Grain::Week,
        Grain::Month => pb::Grain::Month,
        Grain::Quarter => pb::Grain::Quarter,
    }
}

fn range(p: &Period) -> smb_proto::common::v1::DateRange {
    smb_proto::common::v1::DateRange {
        start: p.start.to_string(),
        end: p.end.to_string(),
    }
}

fn mentions(m: &[crate::nlu::link::Mention]) -> Vec<pb::Mention> {
    m.iter()
        .map(|m| pb::Mention {
            kind: serde_json::to_value(m.kind)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            mention: m.mention.clone(),
            candidates: m.candidates.clone(),
        })
        .collect()
}

/// The typed plan `debug: true` returns: what the question was read as, and the steps run.
fn plan_pb(u: &Plan, steps: &[Json]) -> pb::Plan {
    let name = |v: serde_json::Result<Json>| {
        v.ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    };
    pb::Plan {
        normalized: u.normalized.clone(),
        intent: intent_pb(u.intent) as i32,
        metric: u.metric.map(|m| m.name().to_string()).unwrap_or_default(),
        periods: u.periods.iter().map(range).collect(),
        default_period: u.default_period,
        comparison: u
            .comparison
            .map(|c| name(serde_json::to_value(c)))
            .unwrap_or_default(),
        grain: u.grain.map_or(pb::Grain::Unspecified, grain_pb) as i32,
        top_n: u.ranking.map_or(0, |r| r.n as i32),
        product: u.filters.product.clone().unwrap_or_default(),
        customer: u
            .filters
            .customer
            .as_ref()
            .map(|c| c.key.clone())
            .unwrap_or_default(),
        source: u
            .filters
            .source
            .map(|s| s.as_str().to_string())
            .unwrap_or_default(),
        search_words: u
            .search
            .as_ref()
            .map(|s| s.words.clone())
            .unwrap_or_default(),
        search_kinds: u
            .search
            .as_ref()
            .map(|s| s.kinds.iter().map(|k| k.to_string()).collect())
            .unwrap_or_default(),
        conversation: u
            .conversation
            .map(|c| name(serde_json::to_value(c)))
            .unwrap_or_default(),
        action: u.action.unwrap_or_default().to_string(),
        corrections: u
            .corrections
            .iter()
            .map(|(a, b)| format!("{a} -> {b}"))
            .collect(),
        future: u.future,
        unresolved: mentions(&u.unresolved),
        ambiguous: mentions(&u.ambiguous),
        steps: steps
            .iter()
            .map(|s| {
                let mut details = s.clone();
                let step = details
                    .as_object_mut()
                    .and_then(|o| o.remove("step"))
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default();
                pb::PlanStep {
                    step,
                    details: Some(smb_proto::json::json_to_struct(details)),
                }
            })
            .collect(),
    }
}

/// The form of the cached `ProcessResponse`: bumped when the message changes in a way an older encoding
/// would decode wrongly (2: the typed result replaced `result_json`).
const ANSWER_FORMAT: u32 = 2;

const OVER_BUDGET: &str = "(This month's AI allowance is used up, so this answer is the standard wording; the numbers are unaffected.)";

/// The grammar is unsure: nothing about the data was recognised, or a name was not found.
fn unsure(u: &Plan) -> bool {
    (u.intent == Intent::Conversation
        && matches!(
            u.conversation,
            Some(Conversation::OutOfScope) | Some(Conversation::Unintelligible)
        ))
        || (u.intent == Intent::Metrics && !u.unresolved.is_empty())
}

/// What to ask a model about a computed answer: plainer words for a number, or a reply to small talk.
/// Answers that name customers go to a provider only with the tenant's opt-in; clarifications,
/// definitions, searches and actions keep their exact wording.
fn phrasing(
    query: &str,
    u: &Plan,
    a: &Answer,
    shown: &Json,
    turns: &[(String, String)],
    share_customers: bool,
) -> Option<crate::llm::LlmRequest> {
    match a.intent {
        Intent::Metrics => {
            let figures = matches!(&a.result, Structured::Metrics(m) if m.value.is_some() || smb_proto::json::has_rows(m));
            let names_customers =
                u.filters.customer.is_some() || u.metric == Some(Metric::TopCustomers);
            (figures && (share_customers || !names_customers))
                .then(|| crate::llm::tasks::phrase_request(query, &a.answer, shown))
        }
        Intent::Conversation if u.conversation != Some(Conversation::Definition) => {
            Some(crate::llm::tasks::chat_request(query, &a.answer, turns))
        }
        _ => None,
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

impl OrchestratorServiceImpl {
    /// Needs a Tokio runtime: it starts the event publisher.
    pub fn new(db: Db, cache: DynCache, bus: DynBus, cache_ttl: Duration) -> Self {
        let (events, rx) = tokio::sync::mpsc::channel(4096);
        tokio::spawn(publish_events(bus, rx));
        Self {
            db,
            cache,
            cache_ttl,
            tenants: Mutex::new(HashMap::new()),
            events,
            vocab: Arc::new(Mutex::new(HashMap::new())),
            search: None,
            ops: None,
            llm: None,
            log_queries: false,
        }
    }

    /// Puts the question's text on answer spans (off: a hash of it only).
    pub fn with_log_queries(mut self, on: bool) -> Self {
        self.log_queries = on;
        self
    }

    /// The span of one answer, when traces are exported: the tenant, the question (or its hash), and once
    /// answered the intent, the module and whether the cache served it.
    fn answer_span(&self, caller: &Caller, query: &str) -> tracing::Span {
        if !smb_core::telemetry::traced() {
            return tracing::Span::none();
        }
        let query = match self.log_queries {
            true => query.to_string(),
            false => format!("sha256:{}", &hex::encode(Sha256::digest(query))[..16]),
        };
        tracing::info_span!(
            "answer",
            tenant_id = %caller.tenant,
            query = %query,
            intent = tracing::field::Empty,
            module = tracing::field::Empty,
            cache = tracing::field::Empty,
        )
    }

    /// Proposes and runs actions with `ops`.
    pub fn with_ops(mut self, ops: Arc<crate::ops::Ops>) -> Self {
        self.ops = Some(ops);
        self
    }

    /// Understands, phrases and converses with `chain` where it helps (never for the numbers).
    pub fn with_llm(mut self, chain: Arc<crate::llm::Chain>) -> Self {
        self.llm = Some(chain);
        self
    }

    /// Answers searches with `engine`.
    pub fn with_search(mut self, engine: Arc<smb_search::SearchEngine>) -> Self {
        self.search = Some(engine);
        self
    }

    /// The tenant's names and titles, and whether they are of `version`. After new data the previous set is
    /// used while a background task re-reads it (answers computed with it are not cached), so the first
    /// question after a sync does not wait for the re-read.
    async fn vocab(&self, id: &TenantId, version: &str) -> Result<(Arc<Vocab>, bool), Error> {
        {
            let mut map = self.vocab.lock().expect("vocab");
            if let Some(e) = map.get_mut(id)
                && e.vocab.synced()
            {
                if e.version == version {
                    return Ok((e.vocab.clone(), true));
                }
                if !e.refreshing {
                    e.refreshing = true;
                    let (db, map, id, version) = (
                        self.db.clone(),
                        self.vocab.clone(),
                        id.clone(),
                        version.to_string(),
                    );
                    tokio::spawn(async move {
                        let loaded = load_vocab(&db, &id).await;
                        let mut map = map.lock().expect("vocab");
                        match loaded {
                            Ok(v) => {
                                map.insert(
                                    id,
                                    VocabEntry {
                                        version,
                                        vocab: Arc::new(v),
                                        refreshing: false,
                                    },
                                );
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, "re-reading product and customer names failed");
                                if let Some(entry) = map.get_mut(&id) {
                                    entry.refreshing = false;
                                }
                            }
                        }
                    });
                }
                return Ok((e.vocab.clone(), false));
            }
        }
        // Nothing synced yet: only the list of sources is read again (cheap), until a sync finishes.
        let unsynced = self
            .vocab
            .lock()
            .expect("vocab")
            .get(id)
            .map(|e| e.vocab.clone());
        if let Some(v) = unsynced {
            let sources = metrics::sources(&self.db, id).await?;
            if !sources.iter().any(|(_, at)| at.is_some()) {
                let vocab = Arc::new(Vocab {
                    catalog: v.catalog.clone(),
                    sources,
                    currencies: v.currencies.clone(),
                });
                if let Some(e) = self.vocab.lock().expect("vocab").get_mut(id) {
                    e.vocab = vocab.clone();
                }
                return Ok((vocab, false));
            }
        }
        let vocab = Arc::new(load_vocab(&self.db, id).await?);
        self.vocab.lock().expect("vocab").insert(
            id.clone(),
            VocabEntry {
                version: version.to_string(),
                vocab: vocab.clone(),
                refreshing: false,
            },
        );
        Ok((vocab, true))
    }

    async fn tenant(&self, id: &TenantId) -> Result<Tenant, Error> {
        if let Some((at, t)) = self.tenants.lock().expect("tenants").get(id)
            && at.elapsed() < TENANT_TTL
        {
            return Ok(t.clone());
        }
        let t = self.load_tenant(id).await?;
        self.tenants
            .lock()
            .expect("tenants")
            .insert(id.clone(), (Instant::now(), t.clone()));
        Ok(t)
    }

    async fn load_tenant(&self, id: &TenantId) -> Result<Tenant, Error> {
        let row: Option<(String, String, String)> = with_global!(&self.db, read, |tx| {
            sqlx::query_as("SELECT name, timezone, currency FROM tenants WHERE id = $1")
                .bind(id.as_str())
                .fetch_optional(&mut *tx)
                .await?
        });
        let (name, tz, cur) =
            row.ok_or_else(|| Error::unauthenticated("unknown tenant; log in again"))?;
        Ok(Tenant {
            name,
            tz: tz
                .parse()
                .map_err(|_| Error::internal("tenant zone", &tz))?,
            currency: Currency::parse(&cur)
                .unwrap_or_else(|_| Currency::parse("USD").expect("USD")),
        })
    }

    /// Answers one question for `caller`.
    pub async fn process(
        &self,
        caller: &Caller,
        req: pb::ProcessRequest,
    ) -> Result<pb::ProcessResponse, Error> {
        let span = self.answer_span(caller, &req.query);
        self.run(caller, req, None).instrument(span).await
    }

    /// Answers one question, sending the answer's text to `deltas` as it is phrased; the returned
    /// response is the complete answer (its text is authoritative: a provider that broke off or invented
    /// a number is replaced by the deterministic text).
    pub async fn process_streaming(
        &self,
        caller: &Caller,
        req: pb::ProcessRequest,
        deltas: tokio::sync::mpsc::Sender<String>,
    ) -> Result<pb::ProcessResponse, Error> {
        let span = self.answer_span(caller, &req.query);
        self.run(caller, req, Some(&deltas)).instrument(span).await
    }

    async fn run(
        &self,
        caller: &Caller,
        req: pb::ProcessRequest,
        deltas: Option<&tokio::sync::mpsc::Sender<String>>,
    ) -> Result<pb::ProcessResponse, Error> {
        let started = Instant::now();
        let pb::ProcessRequest {
            query,
            as_of,
            debug,
            conversation_id,
        } = req;
        let query: String = query
            .chars()
            .filter(|c| !c.is_control() || c.is_whitespace())
            .collect();
        if query.trim().is_empty() {
            return Err(Error::invalid(
                "query is empty; ask a question such as \"What was my revenue last month?\"",
            ));
        }
        if query.chars().count() > MAX_QUERY_CHARS {
            return Err(Error::invalid(format!(
                "query is too long; keep it under {MAX_QUERY_CHARS} characters"
            )));
        }
        let continuing = !conversation_id.trim().is_empty();
        let conversation_id = if !continuing {
            uuid::Uuid::new_v4().to_string()
        } else {
            uuid::Uuid::parse_str(conversation_id.trim())
                .map_err(|_| {
                    Error::invalid(
                        "conversation_id must be the id an earlier answer returned (a UUID); leave it out to start a new conversation",
                    )
                })?
                .to_string()
        };
        let now: DateTime<Utc> = if as_of.trim().is_empty() {
            Utc::now()
        } else {
            DateTime::parse_from_rfc3339(as_of.trim())
                .map_err(|_| {
                    Error::invalid("as_of must be an RFC 3339 time, e.g. 2025-06-15T14:00:00-04:00")
                })?
                .with_timezone(&Utc)
        };
        let tenant = self.tenant(&caller.tenant).await?;
        let today = now.with_timezone(&tenant.tz).date_naive();
        let version = self
            .cache
            .get(&keys::data_version(&caller.tenant))
            .await?
            .unwrap_or_default();
        let conv_key = keys::conversation(&caller.tenant, &conversation_id);
        // A new conversation has no turns to read.
        let mut turns: Vec<(String, String)> = if continuing {
            self.cache
                .get(&conv_key)
                .await?
                .and_then(|s| serde_json::from_str(&s).ok())
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        let followup = !turns.is_empty() && nlu::followup::elliptical(&query);
        // Answers are cached by the question as written (case and spacing aside), so a cached answer costs
        // no understanding; the data version in the key retires them after new data.
        let written = query
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .to_lowercase();
        // `ANSWER_FORMAT` retires answers cached in an earlier form of the response message.
        let hash = hex::encode(Sha256::digest(format!(
            "{ANSWER_FORMAT}|{written}|{today}|{version}|{debug}"
        )));
        let cache_key = keys::query(&caller.tenant, &hash);
        let cached = if followup {
            None
        } else {
            self.cache.get(&cache_key).await?.and_then(|s| {
                let bytes = base64::engine::general_purpose::STANDARD.decode(s).ok()?;
                <pb::ProcessResponse as prost::Message>::decode(bytes.as_slice()).ok()
            })
        };
        let cache_use = match (followup, cached.is_some()) {
            (true, _) => "bypass",
            (false, true) => "hit",
            (false, false) => "miss",
        };
        let mut streamed = false;
        let mut resp = match cached {
            Some(r) => r,
            None => {
                let (vocab, current) = self.vocab(&caller.tenant, &version).await?;
                let mut u = nlu::understand(&query, today, &vocab.catalog);
                let mut merged = false;
                if followup {
                    // The conversation's context: each earlier follow-up merged into the one before.
                    let mut context: Option<Plan> = None;
                    for (q, _) in &turns {
                        let p = nlu::understand(q, today, &vocab.catalog);
                        context = match context {
                            Some(c) if nlu::followup::elliptical(q) => {
                                Some(nlu::followup::merge(&c, &p).unwrap_or(p))
                            }
                            _ => Some(p),
                        };
                    }
                    if let Some(m) = context.and_then(|c| nlu::followup::merge(&c, &u)) {
                        u = m;
                        merged = true;
                    }
                }
                let mut cacheable = current && vocab.synced() && !merged;
                let mut llm: Option<crate::llm::LlmInfo> = None;
                let mut note: Option<&str> = None;
                let deadline = started + self.llm.as_ref().map_or(Duration::ZERO, |c| c.timeout);
                // 1. Understanding, when the grammar is unsure or left a mention unresolved.
                if let Some(chain) = &self.llm
                    && vocab.synced()
                    && unsure(&u)
                {
                    let req = crate::llm::tasks::plan_request(
                        &query,
                        &turns,
                        today,
                        tenant.tz.name(),
                        &vocab.catalog,
                        chain.share_customer_data,
                    );
                    let catalog = &vocab.catalog;
                    match chain
                        .run(&caller.tenant, &req, deadline, None, |r| {
                            let args = r.tool_args.as_deref().ok_or("no tool call")?;
                            crate::llm::tasks::plan_from_args(args, &query, today, catalog)
                        })
                        .await
                    {
                        crate::llm::Outcome::Done(p, info) => {
                            if let Some(p) = p {
                                u = p;
                            }
                            llm = Some(info);
                        }
                        crate::llm::Outcome::OverBudget => note = Some(OVER_BUDGET),
                        crate::llm::Outcome::Failed { .. } => cacheable = false,
                    }
                }
                let a = self
                    .answer(caller, &tenant, &u, today, &vocab)
                    .instrument(match smb_core::telemetry::traced() {
                        true => tracing::info_span!("compute"),
                        false => tracing::Span::none(),
                    })
                    .await?;
                tracing::debug!(plan = %Json::Array(a.plan.clone()), "plan executed");
                let mut text = a.answer.clone();
                // 2. Phrasing (numbers locked), small talk and help.
                let shown = self.llm.as_ref().map(|_| a.result_json());
                if let (Some(chain), Some(shown)) = (&self.llm, &shown)
                    && note.is_none()
                    && let Some(req) =
                        phrasing(&query, &u, &a, shown, &turns, chain.share_customer_data)
                {
                    let allowed = format!("{} {}", a.answer, shown);
                    match chain
                        .run(&caller.tenant, &req, deadline, deltas, |r| {
                            crate::llm::tasks::locked(&r.text, &allowed)
                        })
                        .await
                    {
                        crate::llm::Outcome::Done(t, info) => {
                            text = t;
                            streamed = deltas.is_some();
                            llm = Some(match llm {
                                Some(first) => crate::llm::LlmInfo {
                                    tokens_in: first.tokens_in + info.tokens_in,
                                    tokens_out: first.tokens_out + info.tokens_out,
                                    fallback_used: first.fallback_used || info.fallback_used,
                                    ..info
                                },
                                None => info,
                            });
                        }
                        crate::llm::Outcome::OverBudget => note = Some(OVER_BUDGET),
                        crate::llm::Outcome::Failed { .. } => cacheable = false,
                    }
                }
                if let Some(n) = note {
                    text = format!("{text} {n}");
                }
                let r = pb::ProcessResponse {
                    answer: text,
                    intent: intent_pb(a.intent) as i32,
                    module: a.module as i32,
                    plan: debug.then(|| plan_pb(&u, &a.plan)),
                    result: Some(a.result),
                    llm: llm.map(|i| pb::LlmUsage {
                        provider: i.provider,
                        model: i.model,
                        fallback_used: i.fallback_used,
                        tokens_in: i.tokens_in as i64,
                        tokens_out: i.tokens_out as i64,
                    }),
                    response_time_ms: 0,
                    conversation_id: String::new(),
                };
                // An action proposal is a new record every time; never replayed from the cache.
                if cacheable && a.intent != Intent::Action {
                    let encoded = base64::engine::general_purpose::STANDARD
                        .encode(prost::Message::encode_to_vec(&r));
                    self.cache.set(&cache_key, &encoded, self.cache_ttl).await?;
                }
                r
            }
        };
        if let Some(d) = deltas
            && !streamed
        {
            let _ = d.send(resp.answer.clone()).await;
        }
        resp.conversation_id = conversation_id;
        resp.response_time_ms = started.elapsed().as_millis() as i64;
        let (intent, module) = (
            smb_proto::json::intent_name(resp.intent),
            smb_proto::json::module_name(resp.module),
        );
        ::metrics::counter!("smb_answers_total", "intent" => intent, "cache" => cache_use)
            .increment(1);
        let span = tracing::Span::current();
        span.record("intent", intent);
        span.record("module", module);
        span.record("cache", cache_use);
        turns.push((query.clone(), resp.answer.clone()));
        if turns.len() > 10 {
            turns.drain(..turns.len() - 10);
        }
        // The turn is saved off the answer's path; a follow-up sent before it lands reads the turns before.
        if let Ok(s) = serde_json::to_string(&turns) {
            let cache = self.cache.clone();
            tokio::spawn(async move {
                if let Err(e) = cache.set(&conv_key, &s, Duration::from_secs(3600)).await {
                    tracing::warn!(error = %e, "conversation turn not saved");
                }
            });
        }
        let event = Envelope::new(
            "user.query.submitted",
            &caller.tenant,
            Some(caller.user.to_string()),
            json!({"query": query, "intent": intent, "module": module, "response_time_ms": resp.response_time_ms}),
        );
        if self
            .events
            .send(event.to_message(topics::QUERY_SUBMITTED))
            .await
            .is_err()
        {
            tracing::warn!("query event publisher has stopped");
        }
        Ok(resp)
    }

    async fn answer(
        &self,
        caller: &Caller,
        t: &Tenant,
        u: &Plan,
        today: NaiveDate,
        vocab: &Vocab,
    ) -> Result<Answer, Error> {
        let tenant_id = &caller.tenant;
        let conv = |answer: String| Answer {
            answer,
            intent: Intent::Conversation,
            module: pb::Module::Assistant,
            result: Structured::Conversation(pb::ConversationResult {}),
            plan: vec![],
        };
        // Words that ask for no number may describe a record ("who bought coffee for their wedding"):
        // answered as a search when one is found.
        if u.intent != Intent::Search
            && u.search.is_some()
            && vocab.synced()
            && let Some(engine) = &self.search
        {
            let s = crate::search::run(engine, &self.db, tenant_id, &t.currency, u).await?;
            if s.found > 0 {
                return Ok(searched(s));
            }
        }
        match u.intent {
            Intent::Conversation => {
                return Ok(conv(match u.conversation {
                    Some(Conversation::Greeting) => "Hello! Ask me about your business — for example \"What was my revenue last month?\" or \"Who were my top 5 customers this year?\"".into(),
                    Some(Conversation::Thanks) => "You're welcome! Ask me anything else about your sales, orders or customers.".into(),
                    Some(Conversation::Capabilities) => "I answer questions about your connected Shopify and Stripe data with exact numbers: revenue, orders, average order value, customers (new and returning), refunds, discounts, units sold, failed payments, product sales and top customers or products — for any period (\"last month\", \"Q2 2024\", \"from May 3 to May 9\", \"since March 1\"), broken down by day, week, month or quarter, or compared with the previous period. Every answer states the definition, period and time zone it used.".into(),
                    Some(Conversation::Farewell) => "Goodbye! Your numbers will be here whenever you want to ask again.".into(),
                    Some(Conversation::Definition) => {
                        let m = u.metric.unwrap_or(Metric::Revenue);
                        format!("{}: {}. Periods are dates in your time zone, and a period that would reach past today stops at today.", label(m), definition(m))
                    }
                    Some(Conversation::Unintelligible) => "I couldn't find a question in that. Try something like \"How many orders did I get this week?\"".into(),
                    _ => "I can only answer questions about your business's own data — sales, orders, customers, refunds and products. Try \"What was my revenue last month?\"".into(),
                }));
            }
            Intent::Search => {
                let Some(engine) = &self.search else {
                    return Ok(Answer {
                        answer: "Search is not enabled on this server. I can answer questions with numbers, like \"How many orders did I get last week?\"".into(),
                        intent: Intent::Search,
                        module: pb::Module::MiniFoundry,
                        result: Structured::Search(pb::SearchResult::default()),
                        plan: vec![],
                    });
                };
                if !vocab.synced()
                    && let Some(a) = self.cannot_answer(u, vocab, today)
                {
                    return Ok(Answer {
                        intent: Intent::Search,
                        ..a
                    });
                }
                let s = crate::search::run(engine, &self.db, tenant_id, &t.currency, u).await?;
                return Ok(searched(s));
            }
            Intent::Action => {
                let (Some(ops), Some(req)) = (&self.ops, &u.act) else {
                    return Ok(Answer {
                        answer: format!(
                            "Taking actions ({}) isn't enabled on this server, so nothing was done. I can answer questions about your numbers in the meantime.",
                            u.action.unwrap_or("action").replace('_', " ")
                        ),
                        intent: Intent::Action,
                        module: pb::Module::OpsCopilot,
                        result: Structured::Action(pb::ActionResult::default()),
                        plan: vec![],
                    });
                };
                let info = crate::ops::TenantInfo {
                    name: t.name.clone(),
                    tz: t.tz,
                    currency: t.currency.clone(),
                };
                let p = ops.propose(caller, &info, req, today).await?;
                return Ok(Answer {
                    answer: p.answer,
                    intent: Intent::Action,
                    module: pb::Module::OpsCopilot,
                    result: Structured::Action(pb::ActionResult { action: p.action }),
                    plan: vec![json!({"step": "propose_action", "request": req})],
                });
            }
            Intent::Metrics => {}
        }
        let metric = u.metric.unwrap_or(Metric::Revenue);
        let mut plan = vec![json!({"step": "understand", "metric": metric.name()})];
        // Amounts in different currencies are never added: money is counted in the tenant's currency, and
        // what was paid in others is reported beside it.
        let foreign: Vec<Currency> = if metric.is_money() {
            vocab
                .currencies
                .iter()
                .filter(|c| !c.eq_ignore_ascii_case(t.currency.as_str()))
                .filter_map(|c| Currency::parse(c).ok())
                .collect()
        } else {
            Vec::new()
        };
        let filter = Filter {
            source: u.filters.source.map(|s| s.as_str().to_string()),
            product: u.filters.product.clone(),
            customer_key: u.filters.customer.as_ref().map(|c| c.key.clone()),
            currency: (!foreign.is_empty()).then(|| t.currency.as_str().to_string()),
        };
        if let Some(c) = &u.filters.customer {
            plan.push(json!({"step": "resolve_customer", "customer": c.name, "key": c.key}));
        }
        if let Some(p) = &u.filters.product {
            plan.push(json!({"step": "resolve_product", "product": p}));
        }
        if let Some(a) = self.cannot_answer(u, vocab, today) {
            return Ok(a);
        }
        let mut period = u.periods[0];
        if period.kind == Kind::AllTime {
            let first = metrics::first_day(&self.db, tenant_id)
                .await?
                .unwrap_or(today);
            period.start = first.min(today);
        }
        let tzname = t.tz.name();
        let sym = t.currency.symbol();
        let exp = t.currency.exponent();
        let fmt = |v: Value| -> String {
            match v {
                Value::Money(m) => money(m, &sym, exp),
                Value::Count(c) => count(c),
                Value::Ratio(_, 0) => money(0, &sym, exp),
                Value::Ratio(n, d) => money((n as f64 / d as f64).round() as i64, &sym, exp),
            }
        };
        let period_json =
            |p: &Period| json!({"start": p.start.to_string(), "end": p.end.to_string()});
        let (sources, freshness, stale) = coverage(vocab, filter.source.as_deref());
        let def = definition_for(metric, &sources);
        let mut result = pb::MetricsResult {
            metric: metric.name().into(),
            period: Some(range(&period)),
            timezone: tzname.into(),
            definition: def.to_string(),
            product: filter.product.clone().unwrap_or_default(),
            customer: filter.customer_key.clone().unwrap_or_default(),
            source: filter.source.clone().unwrap_or_default(),
            sources,
            freshness,
            currency: if metric.is_money() {
                t.currency.as_str().to_string()
            } else {
                String::new()
            },
            ..Default::default()
        };
        if u.future || period.start > today {
            return Ok(Answer {
                answer: format!(
                    "{} hasn't happened yet (today is {} in {tzname}), so there is nothing to report.",
                    describe(&period),
                    today.format("%B %-d, %Y")
                ),
                intent: Intent::Metrics,
                module: pb::Module::MiniFoundry,
                result: Structured::Metrics(result),
                plan,
            });
        }
        let words = describe(&period);
        let answer;
        if metric.is_ranking() {
            let n = u.ranking.map_or(5, |r| r.n);
            plan.push(json!({"step": "fetch", "query": "top", "n": n}));
            let rows = metrics::top(
                &self.db,
                tenant_id,
                metric,
                &filter,
                period.start,
                period.end,
                n,
            )
            .await?;
            let as_value = |v: i64| {
                if metric == Metric::TopProductsByUnits {
                    Value::Count(v)
                } else {
                    Value::Money(v)
                }
            };
            result.rows = rows
                .iter()
                .map(|(l, v)| pb::Row {
                    label: l.clone(),
                    value: round2(as_value(*v).to_f64(exp)),
                })
                .collect();
            let list = rows
                .iter()
                .enumerate()
                .map(|(i, (l, v))| format!("{}. {l} ({})", i + 1, fmt(as_value(*v))))
                .collect::<Vec<_>>()
                .join("; ");
            answer = if rows.is_empty() {
                format!(
                    "{} for {words} ({tzname}): no sales in that period.",
                    label(metric)
                )
            } else {
                format!("{} for {words} ({tzname}), {}: {list}.", label(metric), def)
            };
        } else if let Some(grain) = u.grain {
            plan.push(json!({"step": "fetch", "query": "breakdown", "grain": grain}));
            let (buckets, all_buckets) = buckets(&period, grain);
            let mut rows = Vec::new();
            let daily = metrics::by_day(
                &self.db,
                tenant_id,
                metric,
                &filter,
                period.start,
                period.end,
            )
            .await?;
            // What does not add up by day is computed per bucket, all buckets in one query.
            let bucketed = match &daily {
                Some(_) => Vec::new(),
                None => {
                    let ranges: Vec<(NaiveDate, NaiveDate)> =
                        buckets.iter().map(|(_, s, e)| (*s, *e)).collect();
                    metrics::by_bucket(&self.db, tenant_id, metric, &filter, &ranges).await?
                }
            };
            for (label_day, s, e) in &buckets {
                let v = match &daily {
                    Some(days) => {
                        let (a, b) = days
                            .iter()
                            .filter(|(d, _, _)| d >= s && d <= e)
                            .fold((0, 0), |(a, b), (_, x, y)| (a + x, b + y));
                        metrics::wrap(metric, a, b)
                    }
                    None => {
                        let v = bucketed.iter().find(|(d, _)| d == s).map_or(0, |r| r.1);
                        metrics::wrap(metric, v, 0)
                    }
                };
                rows.push((label_day.to_string(), v));
            }
            plan.push(json!({"step": "aggregate", "buckets": rows.len()}));
            result.grain = grain_pb(grain) as i32;
            let capped = (all_buckets > buckets.len()).then(|| {
                result.capped = Some(pb::Capped {
                    shown: buckets.len() as i32,
                    total: all_buckets as i32,
                });
                format!(
                    " Only the last {} of the {all_buckets} {}s are shown; ask for a shorter period or a coarser breakdown (by week or month) to see them all.",
                    buckets.len(),
                    grain_word(grain)
                )
            });
            result.rows = rows
                .iter()
                .map(|(l, v)| pb::Row {
                    label: l.clone(),
                    value: round2(v.to_f64(exp)),
                })
                .collect();
            let list = rows
                .iter()
                .map(|(l, v)| format!("{l}: {}", fmt(*v)))
                .collect::<Vec<_>>()
                .join(", ");
            answer = format!(
                "{} by {} for {words} ({tzname}) — {}: {list}.{}",
                subject(metric, u),
                grain_word(grain),
                def,
                capped.unwrap_or_default()
            );
        } else {
            plan.push(json!({"step": "fetch", "query": "scalar"}));
            let v = metrics::scalar(
                &self.db,
                tenant_id,
                metric,
                &filter,
                period.start,
                period.end,
            )
            .await?;
            result.value = Some(round2(v.to_f64(exp)));
            let subject = subject(metric, u);
            let prep = if period.start == period.end {
                "on"
            } else {
                "in"
            };
            let mut text = format!(
                "{subject} — {} — was {} {prep} {words} ({tzname})",
                def,
                fmt(v)
            );
            if u.default_period {
                text = format!(
                    "{subject} — {} — was {} over the last 30 days ({words}, {tzname})",
                    def,
                    fmt(v)
                );
            }
            if u.comparison.is_some() {
                let prev = if u.comparison == Some(Comparison::NamedPeriods) {
                    u.periods[1]
                } else {
                    period.previous()
                };
                let pv =
                    metrics::scalar(&self.db, tenant_id, metric, &filter, prev.start, prev.end)
                        .await?;
                plan.push(
                    json!({"step": "fetch", "query": "previous", "period": period_json(&prev)}),
                );
                let (cur, before) = (v.to_f64(exp), pv.to_f64(exp));
                let change =
                    (before != 0.0).then(|| ((cur - before) / before * 1000.0).round() / 10.0);
                result.previous = Some(pb::Comparison {
                    period: Some(range(&prev)),
                    value: round2(before),
                    change_pct: change,
                });
                let delta = match change {
                    Some(c) if c > 0.0 => {
                        format!("up {c:.1}% on {} ({})", describe(&prev), fmt(pv))
                    }
                    Some(c) if c < 0.0 => {
                        format!("down {:.1}% on {} ({})", -c, describe(&prev), fmt(pv))
                    }
                    Some(_) if cur == before => {
                        format!("unchanged from {} ({})", describe(&prev), fmt(pv))
                    }
                    Some(_) => format!(
                        "{} less than 0.1% on {} ({})",
                        if cur > before { "up" } else { "down" },
                        describe(&prev),
                        fmt(pv)
                    ),
                    None => format!(
                        "against {} in {} (no change can be computed from zero)",
                        fmt(pv),
                        describe(&prev)
                    ),
                };
                text = format!("{text}, {delta}");
            }
            answer = format!("{text}.");
        }
        let answer = if foreign.is_empty() {
            answer
        } else {
            let mut apart = Vec::new();
            let mut rows = Vec::new();
            for c in &foreign {
                let f = Filter {
                    currency: Some(c.as_str().to_string()),
                    ..filter.clone()
                };
                let v = metrics::scalar(&self.db, tenant_id, metric, &f, period.start, period.end)
                    .await?;
                if matches!(v, Value::Money(0) | Value::Ratio(_, 0)) {
                    continue;
                }
                let (sym, exp) = (c.symbol(), c.exponent());
                let shown = match v {
                    Value::Money(m) => money(m, &sym, exp),
                    Value::Ratio(n, d) => money((n as f64 / d as f64).round() as i64, &sym, exp),
                    Value::Count(n) => count(n),
                };
                apart.push(format!("{shown} in {}", c.as_str()));
                rows.push(pb::CurrencyValue {
                    currency: c.as_str().to_string(),
                    value: round2(v.to_f64(exp)),
                });
            }
            plan.push(json!({"step": "fetch", "query": "other_currencies", "found": rows.len()}));
            if rows.is_empty() {
                answer
            } else {
                result.other_currencies = rows;
                format!(
                    "{answer} These figures count {} orders only. Orders in other currencies are listed separately, never converted or added: {}.",
                    t.currency.as_str(),
                    apart.join(", ")
                )
            }
        };
        let answer = match stale {
            Some(note) => format!("{answer} {note}"),
            None => answer,
        };
        plan.push(json!({"step": "compose_answer"}));
        Ok(Answer {
            answer,
            intent: Intent::Metrics,
            module: pb::Module::MiniFoundry,
            result: Structured::Metrics(result),
            plan,
        })
    }
}

/// What the number is of: the metric, or a product's sales or units, and the customer it is filtered to.
fn subject(metric: Metric, u: &Plan) -> String {
    let s = match &u.filters.product {
        Some(p) if metric == Metric::Units => format!("Units of {p} sold"),
        Some(p) => format!("Sales of {p}"),
        None => label(metric).to_string(),
    };
    match &u.filters.customer {
        Some(c) if c.name == c.key => format!("{s} for customer {}", c.key),
        Some(c) => format!("{s} for customer {} ({})", c.name, c.key),
        None => s,
    }
}

fn grain_word(g: Grain) -> &'static str {
    match g {
        Grain::Day => "day",
        Grain::Week => "week",
        Grain::Month => "month",
        Grain::Quarter => "quarter",
    }
}

/// The most buckets a breakdown shows (the latest ones; the answer says when there were more).
pub const MAX_BUCKETS: usize = 400;

/// Buckets over the period: (label = bucket's first date, clipped start, clipped end), empty ones included;
/// the last [`MAX_BUCKETS`] of them, and how many there were in all.
pub fn buckets(p: &Period, g: Grain) -> (Vec<(NaiveDate, NaiveDate, NaiveDate)>, usize) {
    let mut out = std::collections::VecDeque::new();
    let mut total = 0;
    let first = match g {
        Grain::Day => p.start,
        Grain::Week => week_start(p.start),
        Grain::Month => month_start(p.start),
        Grain::Quarter => quarter_start(p.start),
    };
    let mut s = first;
    while s <= p.end {
        let next = match g {
            Grain::Day => s + chrono::Duration::days(1),
            Grain::Week => s + chrono::Duration::days(7),
            Grain::Month => add_months(s, 1),
            Grain::Quarter => add_months(s, 3),
        };
        out.push_back((
            s,
            s.max(p.start),
            (next - chrono::Duration::days(1)).min(p.end),
        ));
        total += 1;
        if out.len() > MAX_BUCKETS {
            out.pop_front();
        }
        s = next;
    }
    (out.into(), total)
}

/// Which sources a number covers, their last successful sync (RFC 3339), and a note for the answer text
/// when some of that data is more than a day old.
fn coverage(
    vocab: &Vocab,
    only: Option<&str>,
) -> (Vec<String>, HashMap<String, String>, Option<String>) {
    let now = Utc::now().timestamp_millis();
    let mut sources = Vec::new();
    let mut freshness = HashMap::new();
    let mut stale = Vec::new();
    for (kind, at) in &vocab.sources {
        if only.is_some_and(|o| o != kind) || sources.contains(kind) {
            continue;
        }
        let Some(at) = at else { continue };
        sources.push(kind.clone());
        let Some(t) = DateTime::<Utc>::from_timestamp_millis(*at) else {
            continue;
        };
        freshness.insert(
            kind.clone(),
            t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        );
        if now - at > 24 * 3600 * 1000 {
            stale.push(format!(
                "{} data is as of {}",
                source_name(kind),
                t.format("%b %-d, %Y %H:%M UTC")
            ));
        }
    }
    let note = (!stale.is_empty()).then(|| format!("({}; sync to update.)", stale.join(", ")));
    (sources, freshness, note)
}

fn source_name(kind: &str) -> &str {
    match kind {
        "shopify" => "Shopify",
        "stripe" => "Stripe",
        other => other,
    }
}

fn list_or(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

impl OrchestratorServiceImpl {
    /// Answers that say what is missing instead of a number: no source, no finished sync, a source that is
    /// not connected, a product or customer that is not there or is ambiguous.
    fn cannot_answer(&self, u: &Plan, vocab: &Vocab, today: NaiveDate) -> Option<Answer> {
        let metric = u.metric.unwrap_or(Metric::Revenue);
        let mut result = pb::MetricsResult {
            metric: metric.name().into(),
            period: u.periods.first().map(range),
            ..Default::default()
        };
        let text = if u.future || u.periods.first().is_some_and(|p| p.start > today) {
            // Checked again with the data below; here, so that an empty tenant hears it too.
            return None;
        } else if vocab.sources.is_empty() {
            "No data source is connected yet, so there is nothing to count. Connect your Shopify store or Stripe account (POST /v1/connectors), let the first sync finish, then ask again.".to_string()
        } else if !vocab.synced() {
            "Your sources are connected but no sync has finished yet, so I have no data to answer from. Wait for the first sync to complete (or start one with POST /v1/connectors/{id}/sync), then ask again.".to_string()
        } else if let Some(s) = u.filters.source
            && !vocab
                .sources
                .iter()
                .any(|(k, at)| k == s.as_str() && at.is_some())
        {
            format!(
                "{} isn't connected (or hasn't finished a sync), so I can't report on it. Connected: {}.",
                source_name(s.as_str()),
                vocab
                    .sources
                    .iter()
                    .map(|(k, _)| source_name(k))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        } else if matches!(metric, Metric::TopProducts | Metric::TopProductsByUnits)
            && vocab.catalog.products.is_empty()
        {
            "This business has no products in its data (its payments carry no product lines), so there is nothing to rank by product. Try \"top customers this month\".".to_string()
        } else if let Some(m) = u.unresolved.first() {
            result.unresolved = mentions(&u.unresolved);
            match m.kind {
                MentionKind::Product => {
                    let some: Vec<String> = vocab
                        .catalog
                        .product_titles()
                        .take(5)
                        .map(str::to_string)
                        .collect();
                    if some.is_empty() {
                        format!(
                            "I couldn't find a product called \"{}\" — this business has no products in its data.",
                            m.mention
                        )
                    } else {
                        format!(
                            "I couldn't find a product called \"{}\", so I haven't answered with a total that would ignore it. Your products include {}.",
                            m.mention,
                            some.join(", ")
                        )
                    }
                }
                MentionKind::Customer => format!(
                    "I couldn't find a customer called \"{}\" (by name or e-mail), so I haven't answered with a total that would ignore it. Try their full name or e-mail address.",
                    m.mention
                ),
            }
        } else if let Some(p) = &u.filters.product
            && !matches!(metric, Metric::ProductSales | Metric::Units)
        {
            result.product = p.clone();
            format!(
                "I can't break {} down by product yet. For {p} I can give its sales or units sold — for example \"sales of {p} last month\" or \"how many {p} did we sell this year\".",
                label(metric).to_lowercase()
            )
        } else if let Some(m) = u.ambiguous.first() {
            result.ambiguous = mentions(&u.ambiguous);
            format!(
                "\"{}\" could be {}. Which one do you mean?",
                m.mention,
                list_or(&m.candidates)
            )
        } else {
            return None;
        };
        Some(Answer {
            answer: text,
            intent: Intent::Metrics,
            module: pb::Module::MiniFoundry,
            result: Structured::Metrics(result),
            plan: vec![json!({"step": "clarify"})],
        })
    }
}

/// The stream of a streamed answer: text deltas, then the whole response.
pub type ChunkStream =
    std::pin::Pin<Box<dyn futures::Stream<Item = Result<pb::ProcessChunk, Status>> + Send>>;

impl OrchestratorServiceImpl {
    /// Streams one answer: deltas while it is phrased, then the complete response (or the error).
    pub fn stream(self: &Arc<Self>, caller: Caller, req: pb::ProcessRequest) -> ChunkStream {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<pb::ProcessChunk, Status>>(64);
        let this = self.clone();
        tokio::spawn(async move {
            let (dtx, mut drx) = tokio::sync::mpsc::channel::<String>(64);
            let out = tx.clone();
            let forward = tokio::spawn(async move {
                while let Some(d) = drx.recv().await {
                    let chunk = pb::ProcessChunk {
                        kind: Some(pb::process_chunk::Kind::Delta(d)),
                    };
                    if out.send(Ok(chunk)).await.is_err() {
                        break;
                    }
                }
            });
            let r = this.process_streaming(&caller, req, dtx).await;
            let _ = forward.await;
            let _ = tx
                .send(r.map_err(Status::from).map(|resp| pb::ProcessChunk {
                    kind: Some(pb::process_chunk::Kind::Done(resp)),
                }))
                .await;
        });
        Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
    }
}

/// The gRPC face; it holds the service in an `Arc` so a stream can outlive the call that started it.
#[derive(Clone)]
pub struct OrchestratorGrpc(pub Arc<OrchestratorServiceImpl>);

#[tonic::async_trait]
impl OrchestratorService for OrchestratorGrpc {
    async fn process(
        &self,
        req: Request<pb::ProcessRequest>,
    ) -> Result<Response<pb::ProcessResponse>, Status> {
        let caller = Caller::from_request(&req)?;
        Ok(Response::new(
            self.0.process(&caller, req.into_inner()).await?,
        ))
    }

    type ProcessStreamStream = ChunkStream;

    async fn process_stream(
        &self,
        req: Request<pb::ProcessRequest>,
    ) -> Result<Response<ChunkStream>, Status> {
        let caller = Caller::from_request(&req)?;
        Ok(Response::new(self.0.stream(caller, req.into_inner())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn week_buckets_start_on_monday_and_clip() {
        let p = Period::new(
            "2025-05-01".parse().unwrap(),
            "2025-05-31".parse().unwrap(),
            Kind::Month,
        );
        let (b, total) = buckets(&p, Grain::Week);
        assert_eq!((b.len(), total), (5, 5));
        assert_eq!(b[0].0.to_string(), "2025-04-28");
        assert_eq!(b[0].1.to_string(), "2025-05-01");
    }

    #[test]
    fn a_long_day_breakdown_keeps_the_latest_buckets_and_counts_them_all() {
        let p = Period::new(
            "2022-01-01".parse().unwrap(),
            "2024-12-31".parse().unwrap(),
            Kind::Custom,
        );
        let (b, total) = buckets(&p, Grain::Day);
        assert_eq!((b.len(), total), (MAX_BUCKETS, 1096));
        assert_eq!(b.last().unwrap().2.to_string(), "2024-12-31");
    }
}
