//! Workers: consume raw source pages from the bus, transform them into the canonical commerce model and
//! load them in batches; finish sync runs and announce `connector.sync.completed`.
//!
//! Invariants: loading is an idempotent upsert keyed by (tenant, source, external id); an older version of
//! a record never overwrites a newer one; a bad record is rejected with its reason and the rest of its page
//! still loads; the bus offset is committed only after the page's transaction has committed.

pub mod index;
pub mod load;
pub mod pipeline;
pub mod transform;

pub use pipeline::Worker;
