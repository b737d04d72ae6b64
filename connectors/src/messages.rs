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
    /// One verified webhook event: a single record of `stream` (`refunds` for a Shopify refund).
    Webhook {
        tenant_id: String,
        connector_id: String,
        source: String,
        stream: String,
        event_id: String,
        record: serde_json::Value,
        /// The event's own time (Stripe `created`, ms): the version of the change when the record has none.
        version_ms: Option<i64>,
    },
}
