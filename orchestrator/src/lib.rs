//! Orchestrator (`smb.orchestrator.v1`): answers plain-language questions with exact numbers. Understand
//! (intent, metric, periods, filters) → plan (explicit steps) → fetch and aggregate in SQL → compose a
//! deterministic answer that states the number, the period in words, the time zone and the definition.
//!
//! Invariants: every number comes from SQL over the canonical model of the caller's tenant; money is summed
//! in integer minor units; answers are cached per tenant and data version, so new data invalidates them.

pub mod answer;
pub mod llm;
pub mod metrics;
pub mod nlu;
pub mod ops;
pub mod period;
pub mod search;
pub mod service;

pub use service::{OrchestratorGrpc, OrchestratorServiceImpl};
