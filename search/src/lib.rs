//! Search over a tenant's records (the seed's search handler and its "index into Qdrant" step).
//!
//! - [`doc`]: what is indexed, built by the workers from canonical rows.
//! - [`index`]: the vector index port; [`edge`] (Qdrant Edge, in-process, the embedded default) and
//!   [`server`] (a Qdrant server) adapt it.
//! - [`embed`]: the embedder port; the local all-MiniLM-L6-v2 ([`model`] installs it) and any
//!   OpenAI-compatible endpoint.
//! - [`SearchEngine`]: indexing (idempotent per record version) and retrieval (BM25 + dense, fused by RRF
//!   in one query, then judged so that a search with no good hit finds nothing).

pub mod doc;
pub mod edge;
pub mod embed;
pub mod index;
pub mod model;
pub mod server;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use qdrant_edge::bm25_embed::{EdgeBm25, EdgeBm25Config};
use qdrant_edge::external::ordered_float::NotNan;
use serde::Serialize;
use smb_core::Error;
use uuid::Uuid;

pub use doc::{Doc, Kind};
use embed::{DynEmbedder, cosine};
use index::{DynIndex, Filter, Point, Query, Space, Sparse};

/// How a search was run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// BM25 only: identifiers (order numbers, e-mails, ids), or no embedding model.
    Keyword,
    /// Dense only: nothing in the words to match exactly.
    Semantic,
    /// Both, fused by reciprocal rank fusion.
    Hybrid,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Keyword => "keyword",
            Mode::Semantic => "semantic",
            Mode::Hybrid => "hybrid",
        }
    }
}

/// Tuning of retrieval and of what counts as a good hit. Defaults were measured on the search test set
/// (`tests/tests/search.rs`, `search_bench`).
#[derive(Debug, Clone)]
pub struct Tuning {
    /// Candidates from each side before fusion.
    pub prefetch: usize,
    /// Dense candidates below this cosine are not candidates at all (without MMR).
    pub dense_floor: f32,
    /// MMR trade-off on the dense side (1 = relevance only).
    pub mmr_lambda: f32,
    /// RRF weights of the keyword and dense sides.
    pub weights: (f32, f32),
    /// A hit is good if it is at least this close in meaning…
    pub dense_good: f32,
    /// …or matches at least this share of the search's terms.
    pub keyword_good: f32,
    /// Hits scoring under this share of the best one are dropped.
    pub relative: f32,
    /// How much the fused (RRF) score adds to a hit's own score when ranking.
    pub fused_weight: f32,
    /// Ranking penalty per log of the number of records sharing a hit's text.
    pub shared_penalty: f32,
    /// The least cosine at which one of the tenant's words stands in for a search word.
    pub expand_min: f32,
    /// Weight (share of its IDF) of a search word no record has and nothing stands in for.
    pub unknown_weight: f32,
}

impl Default for Tuning {
    fn default() -> Self {
        Self {
            prefetch: 100,
            dense_floor: 0.2,
            mmr_lambda: 0.7,
            weights: (1.0, 1.0),
            dense_good: 0.4,
            keyword_good: 0.45,
            relative: 0.6,
            fused_weight: 1.0,
            shared_penalty: 0.1,
            expand_min: 0.65,
            unknown_weight: 0.5,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct IndexStats {
    pub docs: usize,
    /// Points written (new or changed).
    pub written: usize,
    /// Texts sent to the embedding model (after the cache).
    pub embedded: usize,
}

#[derive(Debug, Clone)]
pub struct SearchRequest {
    pub filter: Filter,
    /// The words to search for (the plan's search words, not the whole question).
    pub words: String,
    pub limit: usize,
    /// Forces a mode (benchmarks compare them); `None` chooses per question.
    pub mode: Option<Mode>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Found {
    pub kind: Kind,
    pub source: String,
    pub record_id: String,
    pub title: String,
    pub snippet: String,
    /// Relevance in [0, 1]: the larger of the share of words matched and the closeness in meaning.
    pub score: f32,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub matched: Vec<String>,
    /// Other records of the same kind with exactly the same text (folded into this hit).
    pub same_text: usize,
    /// The share of the search's weight its words have (rare words weigh more).
    pub keyword: f32,
    /// Cosine similarity of meaning (0 without a model or a text to compare).
    pub semantic: f32,
}

#[derive(Debug, Clone, Serialize)]
pub struct Results {
    pub mode: Mode,
    pub hits: Vec<Found>,
    /// Candidates the index returned before judging.
    pub candidates: usize,
}

pub struct SearchEngine {
    index: DynIndex,
    embedder: Option<DynEmbedder>,
    bm25: EdgeBm25,
    space: Space,
    model_id: String,
    tuning: Tuning,
    /// Prose → vector: repeated notes ("Leave it at the back door") are embedded once.
    vectors: moka::sync::Cache<String, Arc<Vec<f32>>>,
    /// The collection family (`search.collection`).
    base: String,
    reading: tokio::sync::RwLock<Reading>,
}

enum Reading {
    Unknown,
    Current,
    Previous {
        space: Space,
        same_model: bool,
        checked: std::time::Instant,
    },
}

/// How often a search re-checks whether the generation being built is complete.
const READING_RECHECK: std::time::Duration = std::time::Duration::from_secs(5);
/// The generation marker lives under a tenant id no tenant can have.
const META_TENANT: &str = "__meta__";

fn meta_id() -> Uuid {
    doc::point_id(META_TENANT, Kind::Term, "meta", "ready")
}

/// The marker's version (`model|dim`) when `space` is a complete generation.
async fn generation_of(
    index: &dyn index::VectorIndex,
    space: &Space,
) -> Result<Option<String>, Error> {
    Ok(index
        .versions(space, META_TENANT, &[meta_id()])
        .await?
        .remove(&meta_id()))
}

/// Points per write.
const WRITE_CHUNK: usize = 512;

impl SearchEngine {
    /// `base` names the collection family; the generation (mapping version and model) is appended, so a
    /// new model or mapping writes a new collection instead of mixing vector spaces.
    pub async fn new(
        index: DynIndex,
        embedder: Option<DynEmbedder>,
        base: &str,
    ) -> Result<Self, Error> {
        let model_id = embedder
            .as_ref()
            .map_or_else(|| "bm25".to_string(), |e| e.model_id().to_string());
        let space = Space {
            name: format!("{base}_m{}_{}", doc::MAPPING_VERSION, slug(&model_id)),
            dense_dim: embedder.as_ref().map(|e| e.dim()),
        };
        index.ensure(&space).await?;
        let bm25 = EdgeBm25::new(EdgeBm25Config {
            language: Some("english".into()),
            // Records are short: a dozen words, not the 256 the default assumes.
            avg_len: NotNan::new(24.0).expect("not NaN"),
            ..Default::default()
        })
        .map_err(|e| Error::internal("bm25", e))?;
        Ok(Self {
            index,
            embedder,
            bm25,
            space,
            model_id,
            tuning: Tuning::default(),
            vectors: moka::sync::Cache::builder().max_capacity(50_000).build(),
            base: base.to_string(),
            reading: tokio::sync::RwLock::new(Reading::Unknown),
        })
    }

    pub fn with_tuning(mut self, tuning: Tuning) -> Self {
        self.tuning = tuning;
        self
    }

    pub fn space(&self) -> &Space {
        &self.space
    }

    pub fn index_name(&self) -> &'static str {
        self.index.name()
    }

    pub fn model_id(&self) -> &str {
        &self.model_id
    }

    pub fn has_dense(&self) -> bool {
        self.embedder.is_some()
    }

    /// Indexes `docs` (any tenants). A document whose version is already stored is skipped: nothing is
    /// embedded or written for it.
    pub async fn index(&self, docs: Vec<Doc>) -> Result<IndexStats, Error> {
        let mut stats = IndexStats {
            docs: docs.len(),
            ..Default::default()
        };
        let mut by_tenant: HashMap<String, Vec<Doc>> = HashMap::new();
        for d in docs {
            by_tenant.entry(d.tenant_id.clone()).or_default().push(d);
        }
        for (tenant, docs) in by_tenant {
            // Last one wins when a batch holds the same record twice.
            let mut uniq: HashMap<Uuid, Doc> = HashMap::with_capacity(docs.len());
            for d in docs {
                uniq.insert(d.point_id(), d);
            }
            let ids: Vec<Uuid> = uniq.keys().copied().collect();
            let stored = self.index.versions(&self.space, &tenant, &ids).await?;
            let changed: Vec<(Uuid, Doc, String)> = uniq
                .into_iter()
                .filter_map(|(id, d)| {
                    let v = d.version(&self.model_id);
                    (stored.get(&id) != Some(&v)).then_some((id, d, v))
                })
                .collect();
            if changed.is_empty() {
                continue;
            }
            if let Some(embedder) = &self.embedder {
                let mut words = HashSet::new();
                for (_, d, _) in &changed {
                    if let Some(p) = &d.prose {
                        self.vocabulary(p, &mut words);
                    }
                }
                if !words.is_empty() {
                    self.index_vocabulary(embedder, &tenant, words, &mut stats)
                        .await?;
                }
            }
            let dense = self.dense_for(&changed, &mut stats).await?;
            let mut points = Vec::with_capacity(changed.len());
            for (id, d, version) in changed {
                let s = self.bm25.embed_document(&d.keywords);
                let vector = d
                    .prose
                    .as_ref()
                    .and_then(|p| dense.get(p.as_str()))
                    .map(|v| v.as_ref().clone());
                points.push(Point {
                    id,
                    payload: index::Payload {
                        tenant_id: d.tenant_id.clone(),
                        kind: d.kind,
                        source: d.source.clone(),
                        record_id: d.record_id.clone(),
                        title: d.title.clone(),
                        day: d.day,
                        customer_key: d.customer_key.clone(),
                        text: d.snippet().to_string(),
                        keywords: d.keywords,
                        version,
                        terms: s.indices.clone(),
                    },
                    sparse: Sparse {
                        indices: s.indices,
                        values: s.values,
                    },
                    dense: vector,
                });
            }
            stats.written += points.len();
            let mut points = points.into_iter().peekable();
            while points.peek().is_some() {
                let chunk: Vec<Point> = points.by_ref().take(WRITE_CHUNK).collect();
                self.index.upsert(&self.space, chunk).await?;
            }
        }
        Ok(stats)
    }

    /// The vectors of every distinct prose among `docs`: from the cache, or embedded in one call.
    async fn dense_for(
        &self,
        docs: &[(Uuid, Doc, String)],
        stats: &mut IndexStats,
    ) -> Result<HashMap<String, Arc<Vec<f32>>>, Error> {
        let mut out = HashMap::new();
        let Some(embedder) = &self.embedder else {
            return Ok(out);
        };
        let mut missing: Vec<String> = Vec::new();
        let mut seen = HashSet::new();
        for (_, d, _) in docs {
            let Some(p) = &d.prose else { continue };
            if !seen.insert(p.as_str()) {
                continue;
            }
            match self.vectors.get(p) {
                Some(v) => {
                    out.insert(p.clone(), v);
                }
                None => missing.push(p.clone()),
            }
        }
        if !missing.is_empty() {
            stats.embedded += missing.len();
            let vs = embedder.embed(&missing).await?;
            for (p, v) in missing.into_iter().zip(vs) {
                let v = Arc::new(v);
                self.vectors.insert(p.clone(), v.clone());
                out.insert(p, v);
            }
        }
        Ok(out)
    }

    /// Removes records' points (the record was deleted at its source).
    pub async fn delete(
        &self,
        tenant: &str,
        kind: Kind,
        source: &str,
        record_ids: &[String],
    ) -> Result<(), Error> {
        let ids: Vec<Uuid> = record_ids
            .iter()
            .map(|r| doc::point_id(tenant, kind, source, r))
            .collect();
        self.index.delete(&self.space, tenant, &ids).await
    }

    /// Makes the index durable and compact (after a sync).
    pub async fn flush(&self) -> Result<(), Error> {
        self.index.flush(&self.space).await
    }

    pub async fn count(&self, tenant: &str) -> Result<u64, Error> {
        self.index.count(&self.space, tenant).await
    }

    /// Whether this generation holds every record (its build finished), read from the index.
    pub async fn ready(&self) -> Result<bool, Error> {
        Ok(!self.index.needs_verify() && generation_of(&*self.index, &self.space).await?.is_some())
    }

    /// Marks this generation complete and removes the older ones of the same family.
    pub async fn mark_ready(&self) -> Result<(), Error> {
        let version = format!(
            "{}|{}",
            self.model_id,
            self.space.dense_dim.map_or(0, |d| d)
        );
        self.index
            .upsert(
                &self.space,
                vec![Point {
                    id: meta_id(),
                    payload: index::Payload {
                        tenant_id: META_TENANT.into(),
                        kind: Kind::Term,
                        source: "meta".into(),
                        record_id: "ready".into(),
                        title: "ready".into(),
                        day: None,
                        customer_key: None,
                        text: String::new(),
                        keywords: String::new(),
                        version,
                        terms: Vec::new(),
                    },
                    sparse: Sparse::default(),
                    dense: None,
                }],
            )
            .await?;
        self.index.flush(&self.space).await?;
        self.index.verified();
        for name in self.index.spaces(&self.base).await? {
            if name != self.space.name {
                tracing::info!(collection = %name, "dropping the previous search generation");
                self.index
                    .drop_space(&Space {
                        name,
                        dense_dim: None,
                    })
                    .await?;
            }
        }
        *self.reading.write().await = Reading::Current;
        Ok(())
    }

    /// The generation searches read: this one once built, else the newest previous one that was.
    async fn reading(&self) -> Result<(Space, bool), Error> {
        {
            let r = self.reading.read().await;
            match &*r {
                Reading::Current => return Ok((self.space.clone(), true)),
                Reading::Previous {
                    space,
                    same_model,
                    checked,
                } if checked.elapsed() < READING_RECHECK => {
                    return Ok((space.clone(), *same_model));
                }
                Reading::Unknown | Reading::Previous { .. } => {}
            }
        }
        let mut r = self.reading.write().await;
        if self.ready().await? {
            *r = Reading::Current;
            return Ok((self.space.clone(), true));
        }
        let mut best: Option<(Space, bool)> = None;
        for name in self.index.spaces(&self.base).await? {
            if name == self.space.name {
                continue;
            }
            let probe = Space {
                name: name.clone(),
                dense_dim: None,
            };
            if let Some(v) = generation_of(&*self.index, &probe).await? {
                let (model, dim) = v.split_once('|').unwrap_or((v.as_str(), "0"));
                let dim: usize = dim.parse().unwrap_or(0);
                let same = model == self.model_id;
                best = Some((
                    Space {
                        name,
                        dense_dim: (dim > 0).then_some(dim),
                    },
                    same,
                ));
            }
        }
        let (space, same) = best.unwrap_or((self.space.clone(), true));
        *r = Reading::Previous {
            space: space.clone(),
            same_model: same,
            checked: std::time::Instant::now(),
        };
        Ok((space, same))
    }

    /// Document frequency and inverse document frequency of each term among the tenant's records,
    /// counted by the index itself. A term no record has weighs as much as the rarest: a word nothing
    /// matches lowers every record's share.
    async fn term_stats(
        &self,
        space: &Space,
        tenant: &str,
        terms: &HashSet<u32>,
    ) -> Result<(HashMap<u32, f32>, HashMap<u32, u64>), Error> {
        if terms.is_empty() {
            return Ok((HashMap::new(), HashMap::new()));
        }
        let n = self.index.count(space, tenant).await? as f32;
        let dfs = futures::future::try_join_all(
            terms
                .iter()
                .map(|t| self.index.count_term(space, tenant, *t)),
        )
        .await?;
        let mut idf = HashMap::new();
        let mut df = HashMap::new();
        for (t, d) in terms.iter().zip(dfs) {
            let f = d as f32;
            idf.insert(*t, (1.0 + (n - f + 0.5) / (f + 0.5)).ln().max(0.0));
            df.insert(*t, d);
        }
        Ok((idf, df))
    }

    /// The search's words no record of the tenant has (term, word).
    fn unknown_words(&self, words: &str, df: &HashMap<u32, u64>) -> Vec<(u32, String)> {
        let mut unknown: Vec<(u32, String)> = Vec::new();
        for w in words.split_whitespace() {
            let t = self.bm25.embed_document(w).indices;
            if let [t] = t.as_slice()
                && df.get(t) == Some(&0)
                && !unknown.iter().any(|(u, _)| u == t)
            {
                unknown.push((*t, w.to_lowercase()));
            }
        }
        unknown
    }

    /// For each search word no record has (with its vector), the tenant's own words closest in meaning
    /// (term, cosine).
    async fn expand(
        &self,
        space: &Space,
        tenant: &str,
        unknown: Vec<((u32, String), Vec<f32>)>,
    ) -> Result<HashMap<u32, Vec<(u32, f32)>>, Error> {
        let mut out = HashMap::new();
        for ((term, word), v) in unknown {
            let hits = self
                .index
                .query(
                    space,
                    &Query {
                        filter: Filter {
                            tenant_id: tenant.to_string(),
                            kinds: vec![Kind::Term],
                            ..Default::default()
                        },
                        sparse: None,
                        dense: Some(v),
                        dense_threshold: Some(self.tuning.expand_min),
                        mmr_lambda: None,
                        weights: (1.0, 1.0),
                        prefetch: 3,
                        limit: 3,
                    },
                )
                .await?;
            let near: Vec<(u32, f32)> = hits
                .into_iter()
                .filter_map(|h| {
                    let t = *self.bm25.embed_document(&h.payload.title).indices.first()?;
                    tracing::trace!(word, near = %h.payload.title, cosine = h.score, "search word expansion");
                    (t != term).then_some((t, h.score))
                })
                .collect();
            if !near.is_empty() {
                out.insert(term, near);
            }
        }
        Ok(out)
    }

    /// The words of a record's prose worth a meaning of their own (no stop words, no numbers).
    fn vocabulary(&self, prose: &str, into: &mut HashSet<String>) {
        for w in prose.split(|c: char| !c.is_alphabetic()) {
            if w.chars().count() >= 4 {
                let w = w.to_lowercase();
                if !into.contains(&w) && !self.bm25.embed_document(&w).indices.is_empty() {
                    into.insert(w);
                }
            }
        }
    }

    /// Indexes the tenant's words that are not indexed yet, each with its meaning.
    async fn index_vocabulary(
        &self,
        embedder: &DynEmbedder,
        tenant: &str,
        words: HashSet<String>,
        stats: &mut IndexStats,
    ) -> Result<(), Error> {
        let words: Vec<String> = words.into_iter().collect();
        let ids: Vec<Uuid> = words
            .iter()
            .map(|w| doc::point_id(tenant, Kind::Term, "vocabulary", w))
            .collect();
        let stored = self.index.versions(&self.space, tenant, &ids).await?;
        let missing: Vec<(Uuid, String)> = ids
            .into_iter()
            .zip(words)
            .filter(|(id, _)| !stored.contains_key(id))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let texts: Vec<String> = missing.iter().map(|(_, w)| w.clone()).collect();
        stats.embedded += texts.len();
        let vectors = embedder.embed(&texts).await?;
        let points: Vec<Point> = missing
            .into_iter()
            .zip(vectors)
            .map(|((id, w), v)| {
                let s = self.bm25.embed_document(&w);
                Point {
                    id,
                    payload: index::Payload {
                        tenant_id: tenant.to_string(),
                        kind: Kind::Term,
                        source: "vocabulary".into(),
                        record_id: w.clone(),
                        title: w.clone(),
                        day: None,
                        customer_key: None,
                        text: w.clone(),
                        keywords: w,
                        version: self.model_id.clone(),
                        terms: Vec::new(),
                    },
                    sparse: Sparse {
                        indices: s.indices,
                        values: s.values,
                    },
                    dense: Some(v),
                }
            })
            .collect();
        stats.written += points.len();
        self.index.upsert(&self.space, points).await
    }

    /// The search words reduced to the terms BM25 matches on (stemmed, without stop words).
    fn terms(&self, text: &str) -> HashSet<u32> {
        self.bm25.embed_document(text).indices.into_iter().collect()
    }

    /// Chooses the mode: identifiers are matched exactly; everything else is matched both ways.
    pub fn mode_for(&self, words: &str) -> Mode {
        if self.embedder.is_none() || has_identifier(words) {
            Mode::Keyword
        } else if self.terms(words).is_empty() {
            Mode::Semantic
        } else {
            Mode::Hybrid
        }
    }

    pub async fn search(&self, req: &SearchRequest) -> Result<Results, Error> {
        // While this generation is being built, the previous one answers; if it was built with another
        // model, by words only (its vectors are of another space).
        let (space, dense_ok) = self.reading().await?;
        let mut mode = match req.mode {
            Some(m) if self.embedder.is_some() || m == Mode::Keyword => m,
            _ => self.mode_for(&req.words),
        };
        if !dense_ok {
            mode = Mode::Keyword;
        }
        let space = &space;
        let q_terms = self.terms(&req.words);
        let tenant = req.filter.tenant_id.as_str();
        let t = &self.tuning;
        let (mut idf, df) = self.term_stats(space, tenant, &q_terms).await?;
        // Words no record has ("marriage") are looked up among the tenant's own words by meaning
        // ("wedding"); the keyword side then searches those too.
        // One pass of the model embeds the question and the words no record has.
        let unknown = self.unknown_words(&req.words, &df);
        let (dense, expansions) = match (&self.embedder, mode) {
            (Some(e), Mode::Hybrid | Mode::Semantic) => {
                let mut texts = vec![req.words.clone()];
                texts.extend(unknown.iter().map(|(_, w)| w.clone()));
                let mut vectors = e.embed(&texts).await?.into_iter();
                let dense = vectors.next();
                let near = self
                    .expand(space, tenant, unknown.into_iter().zip(vectors).collect())
                    .await?;
                (dense, near)
            }
            _ => (None, HashMap::new()),
        };
        // A word no record has and none of the tenant's words stands in for weighs less: it may be how
        // the asker talks ("busted"), not what the record says.
        for (term, d) in &df {
            if *d == 0
                && !expansions.contains_key(term)
                && let Some(w) = idf.get_mut(term)
            {
                *w *= t.unknown_weight;
            }
        }
        let sparse = (mode != Mode::Semantic || !expansions.is_empty()).then(|| {
            let s = self.bm25.embed_query(&req.words);
            let mut sparse = Sparse {
                indices: s.indices,
                values: s.values,
            };
            for (term, sim) in expansions.values().flatten() {
                if !sparse.indices.contains(term) {
                    sparse.indices.push(*term);
                    sparse.values.push(*sim);
                }
            }
            sparse
        });
        let q = Query {
            filter: req.filter.clone(),
            sparse,
            dense: dense.clone(),
            dense_threshold: Some(t.dense_floor),
            mmr_lambda: Some(t.mmr_lambda),
            weights: t.weights,
            prefetch: t.prefetch,
            // Room for records that repeat one text; they are folded into one hit below.
            limit: (req.limit * 10).max(50),
        };
        let hits = self.index.query(space, &q).await?;
        let candidates = hits.len();
        let total_idf: f32 = idf.values().sum();
        // The fused order found the candidates; each is then judged on its own and ranked by it.
        let mut judged: Vec<(f32, Found)> = Vec::new();
        let mut texts: HashMap<(Kind, String), usize> = HashMap::new();
        for h in hits {
            let key = (h.payload.kind, h.payload.text.clone());
            if let Some(&at) = texts.get(&key) {
                // Same kind, same words: one finding ("and 79 more orders with this note").
                judged[at].1.same_text += 1;
                continue;
            }
            // The record's BM25 terms were stored with it at indexing time.
            let doc_terms: HashSet<u32> = h.payload.terms.iter().copied().collect();
            // The share of the search's weight (rare words weigh more) this record has; a word matched
            // through one of the tenant's words for it counts by how close that word is.
            let kw = if total_idf > 0.0 {
                q_terms
                    .iter()
                    .map(|t| {
                        let w = idf.get(t).copied().unwrap_or(0.0);
                        let m = if doc_terms.contains(t) {
                            1.0
                        } else {
                            expansions
                                .get(t)
                                .into_iter()
                                .flatten()
                                .filter(|(e, _)| doc_terms.contains(e))
                                .map(|(_, sim)| *sim)
                                .fold(0.0_f32, f32::max)
                        };
                        w * m
                    })
                    .sum::<f32>()
                    / total_idf
            } else {
                0.0
            };
            let sim = match (&dense, &h.dense) {
                (Some(q), Some(d)) => cosine(q, d),
                _ => 0.0,
            };
            // Good: it has the search's important words, or it says the same thing.
            let good = match mode {
                Mode::Keyword => kw >= t.keyword_good,
                _ => kw >= t.keyword_good || sim >= t.dense_good,
            };
            if !good {
                continue;
            }
            texts.insert(key, judged.len());
            let score = kw.max(sim).clamp(0.0, 1.0);
            judged.push((
                score + t.fused_weight * h.score,
                Found {
                    kind: h.payload.kind,
                    source: h.payload.source,
                    record_id: h.payload.record_id,
                    title: h.payload.title,
                    snippet: h.payload.text,
                    score: (score * 1000.0).round() / 1000.0,
                    keyword: (kw * 1000.0).round() / 1000.0,
                    semantic: (sim * 1000.0).round() / 1000.0,
                    matched: matched_words(&self.bm25, &req.words, &doc_terms),
                    same_text: 0,
                },
            ));
        }
        // A text many records share is a category ("Damaged in shipping" on 71 refunds), not the one
        // incident a description points at: it ranks a little lower.
        for (rank, f) in &mut judged {
            if f.same_text > 0 {
                *rank *= (1.0 - t.shared_penalty * (1.0 + f.same_text as f32).ln()).max(0.7);
            }
        }
        judged.sort_by(|a, b| b.0.total_cmp(&a.0));
        // Far below the best are the nearest unrelated records, not answers.
        let best = judged.first().map_or(0.0, |(f, _)| *f);
        let mut found: Vec<Found> = judged
            .into_iter()
            .filter(|(f, _)| *f >= best * t.relative)
            .map(|(_, h)| h)
            .collect();
        found.truncate(req.limit);
        Ok(Results {
            mode,
            hits: found,
            candidates,
        })
    }
}

/// The query's words that the document matched (for the answer's explanation).
fn matched_words(bm25: &EdgeBm25, words: &str, doc_terms: &HashSet<u32>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for w in words.split_whitespace() {
        let t = bm25.embed_document(w);
        if !t.indices.is_empty()
            && t.indices.iter().all(|i| doc_terms.contains(i))
            && !out.iter().any(|x| x == w)
        {
            out.push(w.to_string());
        }
    }
    out
}

/// Order numbers, e-mails, and source ids (ch_…, cus_…) are looked up exactly.
pub fn has_identifier(words: &str) -> bool {
    words.split_whitespace().any(|w| {
        let w = w.trim_matches(|c: char| matches!(c, ',' | '.' | '?' | '!' | '"' | '\''));
        w.contains('@')
            || (w.starts_with('#') && w.len() > 1 && w[1..].chars().all(|c| c.is_ascii_digit()))
            || (w.len() >= 3 && w.chars().all(|c| c.is_ascii_digit()))
            || ["ch_", "cus_", "py_", "pi_", "re_"]
                .iter()
                .any(|p| w.starts_with(p) && w.len() > p.len() + 4)
    })
}

fn slug(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers() {
        assert!(has_identifier("order #1310"));
        assert!(has_identifier("ava.smith@example.com"));
        assert!(has_identifier("ch_5b629795045116a044"));
        assert!(has_identifier("1310"));
        assert!(!has_identifier("grinder arrived broken"));
        assert!(!has_identifier("the 14th"));
    }
}
