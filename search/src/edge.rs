//! The embedded adapter: Qdrant Edge shards in the data directory, one per collection, in-process.
//!
//! Edge is synchronous; every call runs on the blocking pool. Writes to one shard (and its flushes) are
//! serialised by a per-shard lock, reads run concurrently.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use async_trait::async_trait;
use qdrant_edge::external::ordered_float::OrderedFloat;
use qdrant_edge::{
    Condition, CountRequest, CreateIndex, Distance, EdgeConfig, EdgeOptimizersConfig, EdgeShard,
    EdgeSparseVectorParams, EdgeVectorParams, FieldCondition, FieldIndexOperations,
    Filter as EFilter, Fusion, IntegerIndexParams, KeywordIndexParams, Match, Mmr, Modifier,
    NamedQuery, PayloadFieldSchema, PayloadSchemaParams, PointId, PointInsertOperations,
    PointOperations, PointStruct, Prefetch, QueryEnum, QueryRequest, Range, ScoredPoint,
    ScoringQuery, UpdateOperation, ValueVariants, VectorInternal, Vectors, WithPayloadInterface,
    WithVector,
};
use smb_core::Error;
use uuid::Uuid;

use crate::doc::Kind;

use crate::index::{
    DENSE, Filter, Hit, Isolation, Payload, Point, Query, SPARSE, Space, VectorIndex,
    collection_for, index_error,
};

struct Shard {
    shard: EdgeShard,
    /// Serialises writes, flushes and optimisation on this shard (Edge's flush asserts it is alone), and
    /// counts the points written since the last optimisation: they sit in an appendable segment whose
    /// indexes live in memory, so past `optimize_after` they are moved into an optimised segment.
    write: Mutex<usize>,
    /// Bumped after every write to the shard's points (`write_points`): a count taken at another generation
    /// is stale.
    generation: AtomicU64,
}

impl Shard {
    /// Applies a point write (the caller holds `write`) and moves the shard to its next generation.
    fn write_points(&self, op: PointOperations, what: &str) -> Result<(), Error> {
        self.shard
            .update(UpdateOperation::PointOperation(op))
            .map_err(|e| index_error(what, e))?;
        self.generation.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    /// Moves the points written since the last optimisation into optimised segments, however small
    /// their share of Edge's indexing threshold (`unoptimized` as for [`Shard::optimize`]).
    ///
    /// The appendable segment's sparse index is a sorted list per term, and every point added to one
    /// rewrites the bound kept on each entry before it (`PostingList::upsert`): adding a point costs the
    /// length of its terms' lists, so filling the segment is quadratic. Edge indexes a segment only from
    /// 10 MB of vectors, about 40,000 points with words alone (1,536 bytes of dense vector bring that
    /// down to about 6,500), and the profile of a words-only sync of 116k records spent 79% of its time
    /// there. So while a shard grows, its appendable segment is sealed every `optimize_after` points;
    /// the threshold itself stays, so a small shop's index keeps its appendable segment.
    fn seal(&self, unoptimized: &mut usize) -> Result<(), Error> {
        let configure = |c: EdgeOptimizersConfig| {
            self.shard
                .set_optimizers_config(c)
                .map_err(|e| index_error("configuring the search index", e))
        };
        configure(EdgeOptimizersConfig {
            indexing_threshold: Some(1),
            ..optimizers()
        })?;
        let optimized = self.optimize(unoptimized);
        configure(optimizers())?;
        optimized
    }

    /// Optimises the shard; `unoptimized` is the count held under the write lock.
    fn optimize(&self, unoptimized: &mut usize) -> Result<(), Error> {
        self.shard
            .optimize()
            .map_err(|e| index_error("optimising the search index", e))?;
        *unoptimized = 0;
        Ok(())
    }
}

type Shards = Mutex<HashMap<String, Arc<Shard>>>;

pub struct EdgeIndex {
    root: PathBuf,
    isolation: Isolation,
    shards: Arc<Shards>,
    /// Written since the last flush. Edge keeps no log it replays at open, so unflushed writes die with
    /// the process: a flusher thread makes them durable within `FLUSH_EVERY`, and the `DIRTY` file says
    /// a write may not have been.
    dirty: Arc<AtomicBool>,
    /// The last process did not flush everything: the engine re-checks the index against the store.
    unclean: AtomicBool,
    /// Points a shard's appendable segment takes before it is optimised.
    optimize_after: usize,
    /// Exact counts (a tenant's records, and those with a term: every search's IDF) by (collection,
    /// tenant, term), each with the shard generation it was taken at. Counting scans every matching
    /// point, so between writes a search reuses them.
    counts: moka::sync::Cache<(String, String, Option<u32>), (u64, u64)>,
    /// Shards opened so far: each opened shard's generations start at its own multiple of 2^32, so a
    /// collection dropped and made again under its name never reaches a generation a count was kept at.
    opened: AtomicU64,
}

/// Counts kept between writes (a tenant's total and one per searched term).
const COUNTS_KEPT: u64 = 100_000;

/// Points an appendable segment takes before it is sealed ([`Shard::seal`]). Its indexes are in memory
/// (measured: about 230 MB per 100,000 records when nothing optimised them); optimised segments keep
/// theirs on disk. Measured with `sync_bench --stages-only --scale 10 --optimize-after N` (116k records,
/// debug build, one run each), the index stage alone in records/s:
///
/// | N | words only | words + model |
/// |---|---|---|
/// | never sealed (Edge's 10 MB threshold) | 2,138 | (sealed at 20,000 anyway) |
/// | 20,000 | 4,502 | 3,620 |
/// | 10,000 | **5,395** | **4,104** |
/// | 5,000 | 4,226 | |
/// | 2,000 | 2,493 | |
///
/// Below 10,000 the segments built and merged cost more than the shorter lists save.
const OPTIMIZE_AFTER: usize = 10_000;

/// Present while writes may not be durable.
const DIRTY: &str = "DIRTY";
const FLUSH_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

impl EdgeIndex {
    /// Keeps its shards under `root` (created if missing).
    pub fn open(root: &Path, isolation: Isolation) -> Result<Self, Error> {
        std::fs::create_dir_all(root).map_err(|e| index_error("search index directory", e))?;
        let shards: Arc<Shards> = Arc::new(Mutex::new(HashMap::new()));
        let dirty = Arc::new(AtomicBool::new(false));
        let unclean = root.join(DIRTY).exists();
        if unclean {
            tracing::warn!(dir = %root.display(), "the search index was not flushed at the last stop; it will be checked against the store");
        }
        let (weak, flag, dir) = (Arc::downgrade(&shards), dirty.clone(), root.to_path_buf());
        std::thread::Builder::new()
            .name("search-flush".into())
            .spawn(move || flusher(weak, flag, dir))
            .map_err(|e| index_error("search flush thread", e))?;
        Ok(Self {
            root: root.to_path_buf(),
            isolation,
            shards,
            dirty,
            unclean: AtomicBool::new(unclean),
            optimize_after: OPTIMIZE_AFTER,
            counts: moka::sync::Cache::new(COUNTS_KEPT),
            opened: AtomicU64::new(0),
        })
    }

    /// Seals a shard's appendable segment once it holds `points` (default `OPTIMIZE_AFTER`).
    pub fn optimize_after(mut self, points: usize) -> Self {
        self.optimize_after = points.max(1);
        self
    }

    /// The segments of the shard that holds `tenant`'s points in `space` (none before its first write).
    pub fn segments(&self, space: &Space, tenant: &str) -> Result<usize, Error> {
        let collection = collection_for(space, self.isolation, tenant);
        Ok(self
            .shard(&collection, space, false)?
            .map_or(0, |s| s.shard.info().segments_count))
    }

    /// The tenant's records (with `term`, those that have it).
    async fn count_where(
        &self,
        space: &Space,
        tenant: &str,
        term: Option<u32>,
    ) -> Result<u64, Error> {
        let collection = collection_for(space, self.isolation, tenant);
        let Some(shard) = self.shard(&collection, space, false)? else {
            return Ok(0);
        };
        let kept = (collection, tenant.to_string(), term);
        let generation = shard.generation.load(Ordering::SeqCst);
        if let Some((at, n)) = self.counts.get(&kept)
            && at == generation
        {
            return Ok(n);
        }
        let mut f = filter(&Filter {
            tenant_id: tenant.to_string(),
            ..Default::default()
        });
        f.must.get_or_insert_with(Vec::new).extend(term.map(|t| {
            Condition::Field(FieldCondition::new_match(
                key("terms"),
                Match::new_value(ValueVariants::Integer(i64::from(t))),
            ))
        }));
        let n = Self::blocking(move || {
            shard
                .shard
                .count(CountRequest {
                    filter: Some(f),
                    exact: true,
                })
                .map(|n| n as u64)
                .map_err(|e| index_error("counting the search index", e))
        })
        .await?;
        // Taken at `generation` or later: a write in between makes it look stale, never fresh.
        self.counts.insert(kept, (generation, n));
        Ok(n)
    }

    /// Call before and after every write.
    fn mark_dirty(&self) {
        if !self.dirty.swap(true, Ordering::SeqCst) {
            let _ = std::fs::write(self.root.join(DIRTY), b"");
        }
    }

    /// The shard of `collection`, opened or (when `create`) created.
    fn shard(
        &self,
        collection: &str,
        space: &Space,
        create: bool,
    ) -> Result<Option<Arc<Shard>>, Error> {
        let mut shards = self.shards.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = shards.get(collection) {
            return Ok(Some(s.clone()));
        }
        let path = self.root.join(collection);
        let config_file = path.join("edge_config.json");
        let shard = if config_file.exists() {
            let shard = EdgeShard::load(&path, None)
                .map_err(|e| index_error("opening the search index", e))?;
            shard
                .set_optimizers_config(optimizers())
                .map_err(|e| index_error("configuring the search index", e))?;
            shard
        } else if create {
            std::fs::create_dir_all(&path).map_err(|e| index_error("search index directory", e))?;
            let shard = EdgeShard::new(&path, config(space))
                .map_err(|e| index_error("creating the search index", e))?;
            for (field, schema) in payload_indexes() {
                shard
                    .update(UpdateOperation::FieldIndexOperation(
                        FieldIndexOperations::CreateIndex(CreateIndex {
                            field_name: key(field),
                            field_schema: Some(schema),
                        }),
                    ))
                    .map_err(|e| index_error("creating a payload index", e))?;
            }
            shard
        } else {
            return Ok(None);
        };
        let s = Arc::new(Shard {
            shard,
            write: Mutex::new(0),
            generation: AtomicU64::new(self.opened.fetch_add(1, Ordering::SeqCst) << 32),
        });
        shards.insert(collection.to_string(), s.clone());
        Ok(Some(s))
    }

    async fn blocking<T: Send + 'static>(
        f: impl FnOnce() -> Result<T, Error> + Send + 'static,
    ) -> Result<T, Error> {
        tokio::task::spawn_blocking(f)
            .await
            .map_err(|e| index_error("search index task", e))?
    }

    /// Every collection directory that belongs to `space`.
    fn physical(&self, space: &Space) -> Vec<String> {
        let Ok(dir) = std::fs::read_dir(&self.root) else {
            return Vec::new();
        };
        let prefix = format!("{}__", space.name);
        dir.flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| *n == space.name || n.starts_with(&prefix))
            .collect()
    }
}

/// Flushes every open shard while writes are pending; stops when the index is dropped.
fn flusher(shards: Weak<Shards>, dirty: Arc<AtomicBool>, root: PathBuf) {
    loop {
        std::thread::sleep(FLUSH_EVERY);
        let Some(shards) = shards.upgrade() else {
            return;
        };
        if !dirty.swap(false, Ordering::SeqCst) {
            continue;
        }
        let open: Vec<Arc<Shard>> = shards
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        drop(shards);
        for s in open {
            let _w = s.write.lock().unwrap_or_else(|p| p.into_inner());
            s.shard.flush();
        }
        if !dirty.load(Ordering::SeqCst) {
            let _ = std::fs::remove_file(root.join(DIRTY));
        }
    }
}

/// The payload fields filtered on, and how each is indexed. Optimised segments keep these indexes on disk
/// (memory-mapped); `terms` (one entry per word of every record) is only ever matched exactly, and `day`
/// only by range, so neither builds the structure it would not use.
fn payload_indexes() -> Vec<(&'static str, PayloadFieldSchema)> {
    let keyword = |tenant: bool| {
        PayloadFieldSchema::FieldParams(PayloadSchemaParams::Keyword(KeywordIndexParams {
            is_tenant: Some(tenant),
            on_disk: Some(true),
            ..Default::default()
        }))
    };
    let integer = |lookup: bool, range: bool| {
        PayloadFieldSchema::FieldParams(PayloadSchemaParams::Integer(IntegerIndexParams {
            lookup: Some(lookup),
            range: Some(range),
            on_disk: Some(true),
            ..Default::default()
        }))
    };
    vec![
        ("tenant_id", keyword(true)),
        ("kind", keyword(false)),
        ("source", keyword(false)),
        ("customer_key", keyword(false)),
        ("day", integer(false, true)),
        ("terms", integer(true, false)),
    ]
}

/// How the shard's optimiser lays segments out, measured with `search_bench --big` (words only, 300k
/// documents, debug build, one run): Edge's defaults (2 segments, merged up to 512 MB) held up to 355 MB
/// while writing, as each merge rebuilt an ever larger segment; 8 segments of at most 50 MB held 243 MB.
/// Indexing a segment from 2 MB instead of Edge's 10 MB held 226 MB, but then a small shop's whole index
/// was optimised after its first sync and the search test's edited note took 840 ms to be findable instead
/// of 150 ms (presumably the write waiting for a new appendable segment; not confirmed), so the default
/// stays.
fn optimizers() -> EdgeOptimizersConfig {
    EdgeOptimizersConfig {
        default_segment_number: Some(8),
        max_segment_size: Some(50_000),
        ..Default::default()
    }
}

fn config(space: &Space) -> EdgeConfig {
    let mut c = EdgeConfig {
        optimizers: optimizers(),
        ..Default::default()
    };
    c.sparse_vectors.insert(
        SPARSE.to_string(),
        EdgeSparseVectorParams {
            modifier: Some(Modifier::Idf),
            on_disk: Some(true),
            ..Default::default()
        },
    );
    if let Some(dim) = space.dense_dim {
        c.vectors.insert(
            DENSE.to_string(),
            EdgeVectorParams::builder(dim, Distance::Cosine).build(),
        );
    }
    c
}

fn key(field: &str) -> qdrant_edge::JsonPath {
    field
        .try_into()
        .expect("static payload keys are valid JSON paths")
}

fn eq(field: &str, value: &str) -> Condition {
    Condition::Field(FieldCondition::new_match(
        key(field),
        Match::new_value(ValueVariants::String(value.to_string())),
    ))
}

fn any_of(field: &str, values: impl IntoIterator<Item = String>) -> Condition {
    Condition::Filter(EFilter {
        should: Some(values.into_iter().map(|v| eq(field, &v)).collect()),
        ..Default::default()
    })
}

/// The tenant condition is always first; nothing a caller passes can remove it.
fn filter(f: &Filter) -> EFilter {
    let mut must = vec![eq("tenant_id", &f.tenant_id)];
    if !f.kinds.is_empty() {
        must.push(any_of(
            "kind",
            f.kinds.iter().map(|k| k.as_str().to_string()),
        ));
    }
    if !f.sources.is_empty() {
        must.push(any_of("source", f.sources.iter().cloned()));
    }
    if let Some(c) = &f.customer_key {
        must.push(eq("customer_key", c));
    }
    if let Some((from, to)) = f.days {
        must.push(Condition::Field(FieldCondition::new_range(
            key("day"),
            Range {
                gte: Some(OrderedFloat(from as f64)),
                lte: Some(OrderedFloat(to as f64)),
                lt: None,
                gt: None,
            },
        )));
    }
    EFilter {
        must: Some(must),
        // Records only, unless the vocabulary is asked for by name.
        must_not: f
            .kinds
            .is_empty()
            .then(|| vec![eq("kind", Kind::Term.as_str())]),
        ..Default::default()
    }
}

fn point_id(id: Uuid) -> PointId {
    PointId::Uuid(id)
}

fn nearest(vector: VectorInternal, using: &str) -> ScoringQuery {
    ScoringQuery::Vector(QueryEnum::Nearest(NamedQuery {
        query: vector,
        using: Some(using.to_string()),
    }))
}

fn sparse_vector(s: &crate::index::Sparse) -> Result<VectorInternal, Error> {
    qdrant_edge::Vector::new_sparse(s.indices.clone(), s.values.clone())
        .map(|v| v.0)
        .map_err(|e| Error::invalid(format!("sparse vector: {e}")))
}

fn to_hit(p: ScoredPoint) -> Option<Hit> {
    let id = match p.id {
        PointId::Uuid(u) => u,
        PointId::NumId(_) => return None,
    };
    let payload = p.payload?;
    let value = serde_json::Value::Object(payload.0.into_iter().collect());
    let payload: Payload = serde_json::from_value(value).ok()?;
    let dense = match p.vector {
        Some(qdrant_edge::VectorStructInternal::Named(mut m)) => match m.remove(DENSE) {
            Some(VectorInternal::Dense(v)) => Some(v),
            _ => None,
        },
        _ => None,
    };
    Some(Hit {
        id,
        score: p.score,
        payload,
        dense,
    })
}

#[async_trait]
impl VectorIndex for EdgeIndex {
    fn name(&self) -> &'static str {
        "qdrant-edge"
    }

    async fn ensure(&self, space: &Space) -> Result<(), Error> {
        if self.isolation == Isolation::Filter {
            self.shard(&space.name, space, true)?;
        }
        Ok(())
    }

    async fn upsert(&self, space: &Space, points: Vec<Point>) -> Result<(), Error> {
        // Grouped by physical collection (one per tenant under `Isolation::Collection`).
        let mut groups: HashMap<String, Vec<Point>> = HashMap::new();
        for p in points {
            groups
                .entry(collection_for(space, self.isolation, &p.payload.tenant_id))
                .or_default()
                .push(p);
        }
        for (collection, points) in groups {
            let shard = self
                .shard(&collection, space, true)?
                .expect("created on demand");
            let mut structs = Vec::with_capacity(points.len());
            for p in points {
                let mut named: Vec<(&str, VectorInternal)> =
                    vec![(SPARSE, sparse_vector(&p.sparse)?)];
                if let Some(d) = p.dense {
                    named.push((DENSE, VectorInternal::Dense(d)));
                }
                let payload = serde_json::to_value(&p.payload)
                    .map_err(|e| index_error("search payload", e))?;
                structs.push(
                    PointStruct::new(point_id(p.id), Vectors::new_named(named), payload).into(),
                );
            }
            self.mark_dirty();
            let (n, optimize_after) = (structs.len(), self.optimize_after);
            Self::blocking(move || {
                let mut unoptimized = shard.write.lock().unwrap_or_else(|p| p.into_inner());
                shard.write_points(
                    PointOperations::UpsertPoints(PointInsertOperations::PointsList(structs)),
                    "writing to the search index",
                )?;
                *unoptimized += n;
                if *unoptimized >= optimize_after {
                    let t = std::time::Instant::now();
                    shard.seal(&mut unoptimized)?;
                    tracing::info!(
                        elapsed_ms = t.elapsed().as_millis() as u64,
                        "search segment sealed"
                    );
                }
                Ok(())
            })
            .await?;
            self.mark_dirty();
        }
        Ok(())
    }

    async fn delete(&self, space: &Space, tenant: &str, ids: &[Uuid]) -> Result<(), Error> {
        let collection = collection_for(space, self.isolation, tenant);
        let Some(shard) = self.shard(&collection, space, false)? else {
            return Ok(());
        };
        // Only the tenant's own points are deleted, even if another tenant's id is given.
        let mine: Vec<PointId> = self
            .versions(space, tenant, ids)
            .await?
            .into_keys()
            .map(point_id)
            .collect();
        if mine.is_empty() {
            return Ok(());
        }
        self.mark_dirty();
        let dirty = self.dirty.clone();
        Self::blocking(move || {
            let _w = shard.write.lock().unwrap_or_else(|p| p.into_inner());
            shard.write_points(
                PointOperations::DeletePoints { ids: mine },
                "deleting from the search index",
            )?;
            dirty.store(true, Ordering::SeqCst);
            Ok(())
        })
        .await
    }

    async fn versions(
        &self,
        space: &Space,
        tenant: &str,
        ids: &[Uuid],
    ) -> Result<HashMap<Uuid, String>, Error> {
        let collection = collection_for(space, self.isolation, tenant);
        let Some(shard) = self.shard(&collection, space, false)? else {
            return Ok(HashMap::new());
        };
        let pids: Vec<PointId> = ids.iter().map(|u| point_id(*u)).collect();
        let tenant = tenant.to_string();
        Self::blocking(move || {
            let records = shard
                .shard
                .retrieve(
                    &pids,
                    Some(WithPayloadInterface::Fields(vec![
                        key("tenant_id"),
                        key("version"),
                    ])),
                    Some(WithVector::Bool(false)),
                )
                .map_err(|e| index_error("reading the search index", e))?;
            let mut out = HashMap::new();
            for r in records {
                let (PointId::Uuid(id), Some(p)) = (r.id, r.payload) else {
                    continue;
                };
                let t = p.0.get("tenant_id").and_then(|v| v.as_str());
                let v = p.0.get("version").and_then(|v| v.as_str());
                if let (Some(t), Some(v)) = (t, v)
                    && t == tenant
                {
                    out.insert(id, v.to_string());
                }
            }
            Ok(out)
        })
        .await
    }

    async fn query(&self, space: &Space, q: &Query) -> Result<Vec<Hit>, Error> {
        let collection = collection_for(space, self.isolation, &q.filter.tenant_id);
        let Some(shard) = self.shard(&collection, space, false)? else {
            return Ok(Vec::new());
        };
        let f = filter(&q.filter);
        let mut prefetches = Vec::new();
        let mut weights = Vec::new();
        if let Some(s) = q.sparse.as_ref().filter(|s| !s.is_empty()) {
            prefetches.push(Prefetch {
                prefetches: vec![],
                query: Some(nearest(sparse_vector(s)?, SPARSE)),
                limit: q.prefetch,
                params: None,
                filter: Some(f.clone()),
                score_threshold: None,
            });
            weights.push(OrderedFloat(q.weights.0));
        }
        if let (Some(d), Some(_)) = (&q.dense, space.dense_dim) {
            let (query, threshold) = match q.mmr_lambda {
                Some(l) => (
                    ScoringQuery::Mmr(Mmr {
                        vector: VectorInternal::Dense(d.clone()),
                        using: DENSE.to_string(),
                        lambda: OrderedFloat(l),
                        candidates_limit: q.prefetch * 4,
                    }),
                    None,
                ),
                None => (
                    nearest(VectorInternal::Dense(d.clone()), DENSE),
                    q.dense_threshold.map(OrderedFloat),
                ),
            };
            prefetches.push(Prefetch {
                prefetches: vec![],
                query: Some(query),
                limit: q.prefetch,
                params: None,
                filter: Some(f.clone()),
                score_threshold: threshold,
            });
            weights.push(OrderedFloat(q.weights.1));
        }
        let with_vector = if space.dense_dim.is_some() {
            WithVector::Selector(vec![DENSE.to_string()])
        } else {
            WithVector::Bool(false)
        };
        let request = match prefetches.len() {
            0 => return Ok(Vec::new()),
            // One side only: query it directly, with its own scores.
            1 => {
                let p = prefetches.remove(0);
                QueryRequest {
                    prefetches: vec![],
                    query: p.query,
                    filter: Some(f),
                    score_threshold: p.score_threshold,
                    limit: q.limit,
                    offset: 0,
                    params: None,
                    with_vector,
                    with_payload: WithPayloadInterface::Bool(true),
                }
            }
            _ => QueryRequest {
                prefetches,
                query: Some(ScoringQuery::Fusion(Fusion::Rrf {
                    k: RRF_K,
                    weights: Some(weights),
                })),
                filter: Some(f),
                score_threshold: None,
                limit: q.limit,
                offset: 0,
                params: None,
                with_vector,
                with_payload: WithPayloadInterface::Bool(true),
            },
        };
        let tenant = q.filter.tenant_id.clone();
        Self::blocking(move || {
            let points = shard
                .shard
                .query(request)
                .map_err(|e| index_error("searching the index", e))?;
            // The filter already confines the query to the tenant; this is the second lock on that door.
            Ok(points
                .into_iter()
                .filter_map(to_hit)
                .filter(|h| h.payload.tenant_id == tenant)
                .collect())
        })
        .await
    }

    async fn count(&self, space: &Space, tenant: &str) -> Result<u64, Error> {
        self.count_where(space, tenant, None).await
    }

    async fn count_term(&self, space: &Space, tenant: &str, term: u32) -> Result<u64, Error> {
        self.count_where(space, tenant, Some(term)).await
    }

    async fn drop_space(&self, space: &Space) -> Result<(), Error> {
        // Nothing kept for a dropped collection is of use again.
        self.counts.invalidate_all();
        for name in self.physical(space) {
            let mut shard = self
                .shards
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&name);
            // Edge flushes when a shard is dropped, so its files may go only after the last user of it
            // (a query in flight) is done.
            while let Some(s) = shard {
                match Arc::try_unwrap(s) {
                    Ok(s) => {
                        Self::blocking(move || {
                            drop(s);
                            Ok(())
                        })
                        .await?;
                        shard = None;
                    }
                    Err(s) => {
                        shard = Some(s);
                        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                    }
                }
            }
            let path = self.root.join(&name);
            Self::blocking(move || {
                std::fs::remove_dir_all(&path)
                    .map_err(|e| index_error("dropping a search index", e))
            })
            .await?;
        }
        Ok(())
    }

    fn needs_verify(&self) -> bool {
        self.unclean.load(Ordering::SeqCst)
    }

    fn verified(&self) {
        self.unclean.store(false, Ordering::SeqCst);
    }

    async fn spaces(&self, prefix: &str) -> Result<Vec<String>, Error> {
        let Ok(dir) = std::fs::read_dir(&self.root) else {
            return Ok(Vec::new());
        };
        let mut out: Vec<String> = dir
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| n.starts_with(prefix))
            .map(|n| crate::index::logical(&n).to_string())
            .collect();
        out.sort();
        out.dedup();
        Ok(out)
    }

    async fn flush(&self, space: &Space) -> Result<(), Error> {
        let names = self.physical(space);
        for name in names {
            let Some(shard) = self.shard(&name, space, false)? else {
                continue;
            };
            Self::blocking(move || {
                let mut unoptimized = shard.write.lock().unwrap_or_else(|p| p.into_inner());
                shard.optimize(&mut unoptimized)?;
                shard.shard.flush();
                Ok(())
            })
            .await?;
        }
        Ok(())
    }
}

/// The RRF constant: small, because candidate lists are short and the first ranks matter most.
const RRF_K: usize = 10;
