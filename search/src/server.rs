//! The server adapter: a Qdrant server (or cluster) over gRPC with `qdrant-client`.
//!
//! Tenants share a collection (the payload field `tenant_id`, indexed as the tenant key so Qdrant lays out
//! each tenant's points together) or get one each; every request carries the tenant filter either way.

use std::collections::HashMap;

use async_trait::async_trait;
use qdrant_client::Qdrant;
use qdrant_client::qdrant::point_id::PointIdOptions;
use qdrant_client::qdrant::vector_output::Vector as VectorOut;
use qdrant_client::qdrant::vectors_output::VectorsOptions;
use qdrant_client::qdrant::{
    Condition, CountPointsBuilder, CreateCollectionBuilder, CreateFieldIndexCollectionBuilder,
    DeletePointsBuilder, Distance, FieldType, Filter as QFilter, GetPointsBuilder,
    KeywordIndexParamsBuilder, Modifier, NamedVectors, PointId, PointStruct, PointsIdsList,
    PrefetchQueryBuilder, Query as QQuery, QueryPointsBuilder, Range, RrfBuilder,
    SparseVectorParamsBuilder, SparseVectorsConfigBuilder, UpsertPointsBuilder, VectorInput,
    VectorParamsBuilder, VectorsConfigBuilder,
};
use smb_core::Error;
use uuid::Uuid;

use crate::doc::Kind;

use crate::index::{
    DENSE, Filter, Hit, Isolation, Payload, Point, Query, SPARSE, Space, VectorIndex,
    collection_for, index_error,
};

pub struct QdrantIndex {
    client: Qdrant,
    isolation: Isolation,
}

impl QdrantIndex {
    /// `url` is the server's gRPC address (`http://HOST:6334`).
    pub fn connect(url: &str, api_key: Option<&str>, isolation: Isolation) -> Result<Self, Error> {
        let mut b = Qdrant::from_url(url).skip_compatibility_check();
        if let Some(k) = api_key {
            b = b.api_key(k.to_string());
        }
        let client = b
            .build()
            .map_err(|e| Error::invalid(format!("search.qdrant_url: {e}")))?;
        Ok(Self { client, isolation })
    }

    async fn create_if_missing(&self, collection: &str, space: &Space) -> Result<(), Error> {
        let exists = self
            .client
            .collection_exists(collection)
            .await
            .map_err(|e| index_error("qdrant collection_exists", e))?;
        if exists {
            return Ok(());
        }
        let mut sparse = SparseVectorsConfigBuilder::default();
        sparse.add_named_vector_params(
            SPARSE,
            SparseVectorParamsBuilder::default().modifier(Modifier::Idf as i32),
        );
        let mut create = CreateCollectionBuilder::new(collection).sparse_vectors_config(sparse);
        if let Some(dim) = space.dense_dim {
            let mut dense = VectorsConfigBuilder::default();
            dense.add_named_vector_params(
                DENSE,
                VectorParamsBuilder::new(dim as u64, Distance::Cosine),
            );
            create = create.vectors_config(dense);
        }
        if let Err(e) = self.client.create_collection(create).await {
            // Another replica may have created it meanwhile.
            let exists = self
                .client
                .collection_exists(collection)
                .await
                .map_err(|e| index_error("qdrant collection_exists", e))?;
            if !exists {
                return Err(index_error("qdrant create_collection", e));
            }
        }
        self.client
            .create_field_index(
                CreateFieldIndexCollectionBuilder::new(collection, "tenant_id", FieldType::Keyword)
                    .field_index_params(KeywordIndexParamsBuilder::default().is_tenant(true))
                    .wait(true),
            )
            .await
            .map_err(|e| index_error("qdrant create_field_index", e))?;
        for (field, ty) in [
            ("kind", FieldType::Keyword),
            ("source", FieldType::Keyword),
            ("customer_key", FieldType::Keyword),
            ("day", FieldType::Integer),
            ("terms", FieldType::Integer),
        ] {
            self.client
                .create_field_index(
                    CreateFieldIndexCollectionBuilder::new(collection, field, ty).wait(true),
                )
                .await
                .map_err(|e| index_error("qdrant create_field_index", e))?;
        }
        Ok(())
    }

    /// The tenant's records (and that match `also`).
    async fn count_where(
        &self,
        space: &Space,
        tenant: &str,
        also: Option<Condition>,
    ) -> Result<u64, Error> {
        let collection = collection_for(space, self.isolation, tenant);
        if !self.exists(&collection).await? {
            return Ok(0);
        }
        let mut f = filter(&Filter {
            tenant_id: tenant.to_string(),
            ..Default::default()
        });
        f.must.extend(also);
        let r = self
            .client
            .count(CountPointsBuilder::new(collection).filter(f).exact(true))
            .await
            .map_err(|e| index_error("qdrant count", e))?;
        Ok(r.result.map_or(0, |c| c.count))
    }

    async fn exists(&self, collection: &str) -> Result<bool, Error> {
        self.client
            .collection_exists(collection)
            .await
            .map_err(|e| index_error("qdrant collection_exists", e))
    }
}

fn filter(f: &Filter) -> QFilter {
    let kinds_empty = f.kinds.is_empty();
    let mut must = vec![Condition::matches("tenant_id", f.tenant_id.clone())];
    if !f.kinds.is_empty() {
        must.push(
            QFilter::should(
                f.kinds
                    .iter()
                    .map(|k| Condition::matches("kind", k.as_str().to_string())),
            )
            .into(),
        );
    }
    if !f.sources.is_empty() {
        must.push(
            QFilter::should(
                f.sources
                    .iter()
                    .map(|s| Condition::matches("source", s.clone())),
            )
            .into(),
        );
    }
    if let Some(c) = &f.customer_key {
        must.push(Condition::matches("customer_key", c.clone()));
    }
    if let Some((from, to)) = f.days {
        must.push(Condition::range(
            "day",
            Range {
                gte: Some(from as f64),
                lte: Some(to as f64),
                ..Default::default()
            },
        ));
    }
    let mut f = QFilter::must(must);
    if kinds_empty {
        // Records only, unless the vocabulary is asked for by name.
        f.must_not
            .push(Condition::matches("kind", Kind::Term.as_str().to_string()));
    }
    f
}

fn uuid_of(id: Option<PointId>) -> Option<Uuid> {
    match id?.point_id_options? {
        PointIdOptions::Uuid(s) => s.parse().ok(),
        PointIdOptions::Num(_) => None,
    }
}

fn payload_of(p: HashMap<String, qdrant_client::qdrant::Value>) -> Option<Payload> {
    let obj: serde_json::Map<String, serde_json::Value> =
        p.into_iter().map(|(k, v)| (k, v.into_json())).collect();
    serde_json::from_value(serde_json::Value::Object(obj)).ok()
}

fn dense_of(v: Option<qdrant_client::qdrant::VectorsOutput>) -> Option<Vec<f32>> {
    match v?.vectors_options? {
        VectorsOptions::Vectors(mut named) => match named.vectors.remove(DENSE)?.vector? {
            VectorOut::Dense(d) => Some(d.data),
            _ => None,
        },
        VectorsOptions::Vector(_) => None,
    }
}

#[async_trait]
impl VectorIndex for QdrantIndex {
    fn name(&self) -> &'static str {
        "qdrant"
    }

    async fn ensure(&self, space: &Space) -> Result<(), Error> {
        if self.isolation == Isolation::Filter {
            self.create_if_missing(&space.name, space).await?;
        }
        Ok(())
    }

    async fn upsert(&self, space: &Space, points: Vec<Point>) -> Result<(), Error> {
        let mut groups: HashMap<String, Vec<PointStruct>> = HashMap::new();
        for p in points {
            let collection = collection_for(space, self.isolation, &p.payload.tenant_id);
            let mut vectors = NamedVectors::default().add_vector(
                SPARSE,
                qdrant_client::qdrant::Vector::new_sparse(p.sparse.indices, p.sparse.values),
            );
            if let Some(d) = p.dense {
                vectors = vectors.add_vector(DENSE, qdrant_client::qdrant::Vector::new_dense(d));
            }
            let payload =
                serde_json::to_value(&p.payload).map_err(|e| index_error("search payload", e))?;
            let payload = qdrant_client::Payload::try_from(payload)
                .map_err(|e| index_error("search payload", e))?;
            groups.entry(collection).or_default().push(PointStruct::new(
                p.id.to_string(),
                vectors,
                payload,
            ));
        }
        for (collection, points) in groups {
            if self.isolation == Isolation::Collection {
                self.create_if_missing(&collection, space).await?;
            }
            self.client
                .upsert_points(UpsertPointsBuilder::new(collection, points).wait(true))
                .await
                .map_err(|e| index_error("qdrant upsert", e))?;
        }
        Ok(())
    }

    async fn delete(&self, space: &Space, tenant: &str, ids: &[Uuid]) -> Result<(), Error> {
        let collection = collection_for(space, self.isolation, tenant);
        if !self.exists(&collection).await? {
            return Ok(());
        }
        // Only the tenant's own points: the ids are checked against the tenant first.
        let mine: Vec<PointId> = self
            .versions(space, tenant, ids)
            .await?
            .into_keys()
            .map(|u| PointId::from(u.to_string()))
            .collect();
        if mine.is_empty() {
            return Ok(());
        }
        self.client
            .delete_points(
                DeletePointsBuilder::new(collection)
                    .points(PointsIdsList { ids: mine })
                    .wait(true),
            )
            .await
            .map_err(|e| index_error("qdrant delete", e))?;
        Ok(())
    }

    async fn versions(
        &self,
        space: &Space,
        tenant: &str,
        ids: &[Uuid],
    ) -> Result<HashMap<Uuid, String>, Error> {
        let collection = collection_for(space, self.isolation, tenant);
        if ids.is_empty() || !self.exists(&collection).await? {
            return Ok(HashMap::new());
        }
        let pids: Vec<PointId> = ids.iter().map(|u| PointId::from(u.to_string())).collect();
        let got = self
            .client
            .get_points(
                GetPointsBuilder::new(collection, pids)
                    .with_payload(true)
                    .with_vectors(false),
            )
            .await
            .map_err(|e| index_error("qdrant get_points", e))?;
        Ok(got
            .result
            .into_iter()
            .filter_map(|r| Some((uuid_of(r.id)?, payload_of(r.payload)?)))
            .filter(|(_, p)| p.tenant_id == tenant)
            .map(|(id, p)| (id, p.version))
            .collect())
    }

    async fn query(&self, space: &Space, q: &Query) -> Result<Vec<Hit>, Error> {
        let collection = collection_for(space, self.isolation, &q.filter.tenant_id);
        if !self.exists(&collection).await? {
            return Ok(Vec::new());
        }
        let f = filter(&q.filter);
        let mut prefetches = Vec::new();
        let mut weights = Vec::new();
        if let Some(s) = q.sparse.as_ref().filter(|s| !s.is_empty()) {
            prefetches.push(
                PrefetchQueryBuilder::default()
                    .query(QQuery::new_nearest(VectorInput::new_sparse(
                        s.indices.clone(),
                        s.values.clone(),
                    )))
                    .using(SPARSE)
                    .filter(f.clone())
                    .limit(q.prefetch as u64),
            );
            weights.push(q.weights.0);
        }
        if let (Some(d), Some(_)) = (&q.dense, space.dense_dim) {
            let query = match q.mmr_lambda {
                Some(l) => QQuery::new_nearest_with_mmr(
                    VectorInput::new_dense(d.clone()),
                    qdrant_client::qdrant::Mmr {
                        diversity: Some(1.0 - l),
                        candidates_limit: Some((q.prefetch * 4) as u32),
                    },
                ),
                None => QQuery::new_nearest(VectorInput::new_dense(d.clone())),
            };
            let mut p = PrefetchQueryBuilder::default()
                .query(query)
                .using(DENSE)
                .filter(f.clone())
                .limit(q.prefetch as u64);
            if let (Some(t), None) = (q.dense_threshold, q.mmr_lambda) {
                p = p.score_threshold(t);
            }
            prefetches.push(p);
            weights.push(q.weights.1);
        }
        let mut req = QueryPointsBuilder::new(collection)
            .filter(f)
            .limit(q.limit as u64)
            .with_payload(true)
            .with_vectors(space.dense_dim.is_some());
        req = match prefetches.len() {
            0 => return Ok(Vec::new()),
            1 => {
                let p = prefetches.remove(0).build();
                let mut r = req.query(p.query.expect("set above"));
                if let Some(u) = p.using {
                    r = r.using(u);
                }
                if let Some(t) = p.score_threshold {
                    r = r.score_threshold(t);
                }
                r
            }
            _ => {
                for p in prefetches {
                    req = req.add_prefetch(p);
                }
                req.query(QQuery::new_rrf(RrfBuilder::with_k(RRF_K).weights(weights)))
            }
        };
        let res = self
            .client
            .query(req)
            .await
            .map_err(|e| index_error("qdrant query", e))?;
        let tenant = &q.filter.tenant_id;
        Ok(res
            .result
            .into_iter()
            .filter_map(|p| {
                Some(Hit {
                    id: uuid_of(p.id)?,
                    score: p.score,
                    payload: payload_of(p.payload)?,
                    dense: dense_of(p.vectors),
                })
            })
            .filter(|h| &h.payload.tenant_id == tenant)
            .collect())
    }

    async fn count(&self, space: &Space, tenant: &str) -> Result<u64, Error> {
        self.count_where(space, tenant, None).await
    }

    async fn count_term(&self, space: &Space, tenant: &str, term: u32) -> Result<u64, Error> {
        self.count_where(
            space,
            tenant,
            Some(Condition::matches("terms", i64::from(term))),
        )
        .await
    }

    async fn spaces(&self, prefix: &str) -> Result<Vec<String>, Error> {
        let all = self
            .client
            .list_collections()
            .await
            .map_err(|e| index_error("qdrant list_collections", e))?;
        let mut out: Vec<String> = all
            .collections
            .into_iter()
            .filter(|c| c.name.starts_with(prefix))
            .map(|c| crate::index::logical(&c.name).to_string())
            .collect();
        out.sort();
        out.dedup();
        Ok(out)
    }

    async fn drop_space(&self, space: &Space) -> Result<(), Error> {
        let all = self
            .client
            .list_collections()
            .await
            .map_err(|e| index_error("qdrant list_collections", e))?;
        let prefix = format!("{}__", space.name);
        for c in all.collections {
            if c.name == space.name || c.name.starts_with(&prefix) {
                self.client
                    .delete_collection(c.name)
                    .await
                    .map_err(|e| index_error("qdrant delete_collection", e))?;
            }
        }
        Ok(())
    }
}

const RRF_K: u32 = 10;
