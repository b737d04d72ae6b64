-- Identity (global: a login does not know its tenant yet).
CREATE TABLE tenants (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    timezone TEXT NOT NULL,
    currency TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE TABLE users (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    email TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    role TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE TABLE sessions (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    user_id TEXT NOT NULL REFERENCES users(id),
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked_at BIGINT,
    revoke_reason TEXT
);
CREATE TABLE refresh_tokens (
    token_hash TEXT PRIMARY KEY,
    session_id TEXT NOT NULL REFERENCES sessions(id),
    issued_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT
);
CREATE INDEX refresh_tokens_session ON refresh_tokens(session_id);

-- Connected sources and their runs (tenant data).
CREATE TABLE connectors (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    kind TEXT NOT NULL,
    settings TEXT NOT NULL,
    secret_sealed TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    last_sync_at BIGINT,
    last_sync_status TEXT
);
CREATE INDEX connectors_tenant ON connectors(tenant_id);
-- Scheduling and leases (infrastructure: ids only, read across tenants by the scheduler).
CREATE TABLE connector_schedule (
    connector_id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    next_run_at BIGINT NOT NULL,
    lease_owner TEXT,
    lease_until BIGINT,
    pending_sync_id TEXT
);
CREATE TABLE sync_runs (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    connector_id TEXT NOT NULL,
    status TEXT NOT NULL,
    trigger_kind TEXT NOT NULL,
    records_synced BIGINT NOT NULL DEFAULT 0,
    records_failed BIGINT NOT NULL DEFAULT 0,
    rejections TEXT NOT NULL DEFAULT '[]',
    error TEXT,
    created_at BIGINT NOT NULL,
    started_at BIGINT,
    finished_at BIGINT,
    duration_ms BIGINT,
    -- The last bus offset applied to this run: a redelivered page is recognised and skipped.
    last_offset BIGINT
);
CREATE INDEX sync_runs_connector ON sync_runs(tenant_id, connector_id);
CREATE TABLE sync_cursors (
    connector_id TEXT NOT NULL,
    stream TEXT NOT NULL,
    tenant_id TEXT NOT NULL,
    cursor TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (connector_id, stream)
);

-- The canonical commerce model, keyed by (tenant, source, external id), raw record beside each row.
CREATE TABLE orders (
    tenant_id TEXT NOT NULL,
    source TEXT NOT NULL,
    external_id TEXT NOT NULL,
    name TEXT NOT NULL,
    customer_key TEXT,
    customer_ref TEXT,
    customer_email TEXT,
    customer_name TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    local_date DATE NOT NULL,
    status TEXT NOT NULL,
    counted BOOLEAN NOT NULL,
    test BOOLEAN NOT NULL,
    total_minor BIGINT NOT NULL,
    refunded_minor BIGINT NOT NULL,
    discounts_minor BIGINT NOT NULL,
    currency TEXT NOT NULL,
    note TEXT,
    raw JSONB NOT NULL,
    PRIMARY KEY (tenant_id, source, external_id)
);
CREATE INDEX orders_date ON orders(tenant_id, local_date);
CREATE INDEX orders_customer ON orders(tenant_id, customer_key);
CREATE TABLE order_lines (
    tenant_id TEXT NOT NULL,
    source TEXT NOT NULL,
    external_id TEXT NOT NULL,
    order_external_id TEXT NOT NULL,
    product_ref TEXT,
    title TEXT NOT NULL,
    quantity BIGINT NOT NULL,
    price_minor BIGINT NOT NULL,
    local_date DATE NOT NULL,
    counted BOOLEAN NOT NULL,
    PRIMARY KEY (tenant_id, source, external_id)
);
CREATE INDEX order_lines_order ON order_lines(tenant_id, source, order_external_id);
CREATE INDEX order_lines_date ON order_lines(tenant_id, local_date);
CREATE TABLE refunds (
    tenant_id TEXT NOT NULL,
    source TEXT NOT NULL,
    external_id TEXT NOT NULL,
    order_external_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    local_date DATE NOT NULL,
    amount_minor BIGINT NOT NULL,
    test BOOLEAN NOT NULL,
    raw JSONB NOT NULL,
    PRIMARY KEY (tenant_id, source, external_id)
);
CREATE INDEX refunds_order ON refunds(tenant_id, source, order_external_id);
CREATE INDEX refunds_date ON refunds(tenant_id, local_date);
CREATE TABLE customers (
    tenant_id TEXT NOT NULL,
    source TEXT NOT NULL,
    external_id TEXT NOT NULL,
    email TEXT,
    name TEXT,
    customer_key TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    raw JSONB NOT NULL,
    PRIMARY KEY (tenant_id, source, external_id)
);
CREATE INDEX customers_key ON customers(tenant_id, customer_key);
CREATE TABLE products (
    tenant_id TEXT NOT NULL,
    source TEXT NOT NULL,
    external_id TEXT NOT NULL,
    title TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    raw JSONB NOT NULL,
    PRIMARY KEY (tenant_id, source, external_id)
);

-- The embedded event bus: an append-only log per topic and committed positions per consumer group.
CREATE TABLE bus_log (
    id BIGSERIAL PRIMARY KEY,
    topic TEXT NOT NULL,
    msg_key TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX bus_log_topic ON bus_log(topic, id);
CREATE TABLE bus_offsets (
    consumer_group TEXT NOT NULL,
    topic TEXT NOT NULL,
    position BIGINT NOT NULL,
    PRIMARY KEY (consumer_group, topic)
);

-- Row-level security: every tenant data table sees only the rows of the transaction's tenant
-- (set_config('app.tenant_id', ..., true)); with no tenant set, nothing. FORCE applies it to the owner too.
ALTER TABLE connectors ENABLE ROW LEVEL SECURITY;
ALTER TABLE connectors FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON connectors USING (tenant_id = current_setting('app.tenant_id', true)) WITH CHECK (tenant_id = current_setting('app.tenant_id', true));
ALTER TABLE sync_runs ENABLE ROW LEVEL SECURITY;
ALTER TABLE sync_runs FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON sync_runs USING (tenant_id = current_setting('app.tenant_id', true)) WITH CHECK (tenant_id = current_setting('app.tenant_id', true));
ALTER TABLE sync_cursors ENABLE ROW LEVEL SECURITY;
ALTER TABLE sync_cursors FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON sync_cursors USING (tenant_id = current_setting('app.tenant_id', true)) WITH CHECK (tenant_id = current_setting('app.tenant_id', true));
ALTER TABLE orders ENABLE ROW LEVEL SECURITY;
ALTER TABLE orders FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON orders USING (tenant_id = current_setting('app.tenant_id', true)) WITH CHECK (tenant_id = current_setting('app.tenant_id', true));
ALTER TABLE order_lines ENABLE ROW LEVEL SECURITY;
ALTER TABLE order_lines FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON order_lines USING (tenant_id = current_setting('app.tenant_id', true)) WITH CHECK (tenant_id = current_setting('app.tenant_id', true));
ALTER TABLE refunds ENABLE ROW LEVEL SECURITY;
ALTER TABLE refunds FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON refunds USING (tenant_id = current_setting('app.tenant_id', true)) WITH CHECK (tenant_id = current_setting('app.tenant_id', true));
ALTER TABLE customers ENABLE ROW LEVEL SECURITY;
ALTER TABLE customers FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON customers USING (tenant_id = current_setting('app.tenant_id', true)) WITH CHECK (tenant_id = current_setting('app.tenant_id', true));
ALTER TABLE products ENABLE ROW LEVEL SECURITY;
ALTER TABLE products FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON products USING (tenant_id = current_setting('app.tenant_id', true)) WITH CHECK (tenant_id = current_setting('app.tenant_id', true));
