//! What a sync publishes on `smb.connector.records`, keyed by connector so a run's pages and its end marker
//! stay in order.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RawMessage {
    /// One page of raw records of one stream.
    Page {
        tenant_id: String,
        connector_id: String,
        sync_id: String,
        source: String,
        stream: String,
        records: Vec<serde_json::Value>,
    },
    /// The run's end: every page before it on the key has been published.
    End {
        tenant_id: String,
        connector_id: String,
        sync_id: String,
        source: String,
        /// Why fetching failed, if it did.
        error: Option<String>,
    },
}
