-- Transactional outbox: events written in the same transaction as the state change they follow; a relay
-- publishes them to the bus and deletes them.
CREATE TABLE outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    msg_key TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
-- Webhook routing (infrastructure: read before the tenant is known): connector → tenant, kind, sealed secret.
CREATE TABLE webhook_endpoints (
    connector_id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    secret_sealed TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);
-- Accepted webhook deliveries, for deduplication by the source's event id.
CREATE TABLE webhook_inbox (
    connector_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    tenant_id TEXT NOT NULL,
    topic TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    PRIMARY KEY (connector_id, event_id)
);
