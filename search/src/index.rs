//! The vector index port. Two adapters — Qdrant Edge in-process ([`crate::edge`]) and a Qdrant server
//! ([`crate::server`]) — pass one contract suite (`tests/tests/search_index.rs`).
//!
//! Invariants every adapter keeps:
//! - every read and every delete is confined to one tenant: the tenant filter is added by the adapter, not
//!   by callers, so no query can forget it;
//! - a point's id is derived from (tenant, kind, source, record), so an upsert replaces, never duplicates;
//! - hybrid retrieval is one request: a sparse (BM25) and a dense prefetch fused by reciprocal rank fusion.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use smb_core::Error;
use uuid::Uuid;

use crate::doc::Kind;

/// Name of the sparse (BM25) vector in every collection.
pub const SPARSE: &str = "bm25";
/// Name of the dense vector.
pub const DENSE: &str = "dense";

/// A sparse vector: BM25 term weights by term id.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sparse {
    pub indices: Vec<u32>,
    pub values: Vec<f32>,
}

impl Sparse {
    pub fn is_empty(&self) -> bool {
        self.indices.is_empty()
    }
}

/// How tenants are kept apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Isolation {
    /// One collection; every point carries `tenant_id` (a keyword index marked as the tenant key) and every
    /// request filters on it.
    #[default]
    Filter,
    /// One collection per tenant, and the tenant filter as well.
    Collection,
}

/// A logical collection: one generation of the index (mapping version + embedding model).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Space {
    pub name: String,
    /// Dimensions of the dense vector; `None` for a keyword-only index.
    pub dense_dim: Option<usize>,
}

/// The payload every point carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Payload {
    pub tenant_id: String,
    pub kind: Kind,
    pub source: String,
    pub record_id: String,
    pub title: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub day: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_key: Option<String>,
    /// The snippet's text.
    pub text: String,
    /// The keyword side's text (to explain which words matched).
    pub keywords: String,
    pub version: String,
    /// The BM25 term ids of `keywords`, indexed: how many of a tenant's records have a term is a count.
    #[serde(default)]
    pub terms: Vec<u32>,
}

#[derive(Debug, Clone)]
pub struct Point {
    pub id: Uuid,
    pub payload: Payload,
    pub sparse: Sparse,
    pub dense: Option<Vec<f32>>,
}

/// Filters from the plan; the tenant is mandatory.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    pub tenant_id: String,
    /// Empty means every kind.
    pub kinds: Vec<Kind>,
    /// Empty means every source.
    pub sources: Vec<String>,
    pub customer_key: Option<String>,
    /// Inclusive day range (days since 1970-01-01).
    pub days: Option<(i32, i32)>,
}

#[derive(Debug, Clone)]
pub struct Query {
    pub filter: Filter,
    pub sparse: Option<Sparse>,
    pub dense: Option<Vec<f32>>,
    /// Dense candidates below this cosine similarity are not candidates (plain nearest search only).
    pub dense_threshold: Option<f32>,
    /// Diversify the dense candidates by maximal marginal relevance (0 = all diversity, 1 = all
    /// relevance): records that say the same thing ("Leave it at the back door", eighty times) take one
    /// place among the candidates instead of all of them.
    pub mmr_lambda: Option<f32>,
    /// RRF weights of the (sparse, dense) prefetches.
    pub weights: (f32, f32),
    /// Candidates taken from each side before fusion.
    pub prefetch: usize,
    pub limit: usize,
}

#[derive(Debug, Clone)]
pub struct Hit {
    pub id: Uuid,
    /// The fused (or single-side) score from the index.
    pub score: f32,
    pub payload: Payload,
    /// The stored dense vector, to judge how close the hit really is.
    pub dense: Option<Vec<f32>>,
}

#[async_trait]
pub trait VectorIndex: Send + Sync {
    fn name(&self) -> &'static str;
    /// Creates the collection (for `Isolation::Collection`: prepares it; tenants' collections are created
    /// on first write). Idempotent.
    async fn ensure(&self, space: &Space) -> Result<(), Error>;
    async fn upsert(&self, space: &Space, points: Vec<Point>) -> Result<(), Error>;
    /// Deletes the tenant's points with these ids (others' ids are left alone even if given).
    async fn delete(&self, space: &Space, tenant: &str, ids: &[Uuid]) -> Result<(), Error>;
    /// The stored `version` of each of the tenant's points that exists.
    async fn versions(
        &self,
        space: &Space,
        tenant: &str,
        ids: &[Uuid],
    ) -> Result<HashMap<Uuid, String>, Error>;
    async fn query(&self, space: &Space, q: &Query) -> Result<Vec<Hit>, Error>;
    /// Number of the tenant's points.
    async fn count(&self, space: &Space, tenant: &str) -> Result<u64, Error>;
    /// Number of the tenant's points whose keywords have `term` (its document frequency).
    async fn count_term(&self, space: &Space, tenant: &str, term: u32) -> Result<u64, Error>;
    /// Removes the collection (every tenant's points).
    async fn drop_space(&self, space: &Space) -> Result<(), Error>;
    /// Whether writes of an earlier process may have been lost (the engine then re-checks the index
    /// against the store before trusting it).
    fn needs_verify(&self) -> bool {
        false
    }
    /// The re-check is done.
    fn verified(&self) {}
    /// The logical collections whose name starts with `prefix` (generations of one family).
    async fn spaces(&self, prefix: &str) -> Result<Vec<String>, Error>;
    /// Makes writes durable and compacts, where the engine needs it (after a sync).
    async fn flush(&self, _space: &Space) -> Result<(), Error> {
        Ok(())
    }
}

pub type DynIndex = Arc<dyn VectorIndex>;

/// The physical collection a tenant's points live in.
pub fn collection_for(space: &Space, isolation: Isolation, tenant: &str) -> String {
    match isolation {
        Isolation::Filter => space.name.clone(),
        Isolation::Collection => format!("{}__{}", space.name, tenant_slug(tenant)),
    }
}

/// A tenant id as a collection-name part (ids are UUID-like; anything else is hashed).
fn tenant_slug(tenant: &str) -> String {
    if !tenant.is_empty()
        && tenant.len() <= 64
        && tenant
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        tenant.to_string()
    } else {
        Uuid::new_v5(&Uuid::NAMESPACE_OID, tenant.as_bytes()).to_string()
    }
}

pub(crate) fn index_error(what: &str, e: impl std::fmt::Display) -> Error {
    Error::internal(what, e)
}

/// The logical collection a physical collection name belongs to.
pub fn logical(name: &str) -> &str {
    name.split_once("__").map_or(name, |(l, _)| l)
}
