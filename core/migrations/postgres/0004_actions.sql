-- Actions proposed by questions and executed only after a person confirms them (ops-copilot).
-- status: pending_confirmation → executing → executed | failed | outcome_unknown; or rejected | expired.
CREATE TABLE actions (
    tenant_id TEXT NOT NULL,
    id TEXT NOT NULL,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    params TEXT NOT NULL,
    preview TEXT NOT NULL,
    needs_owner BOOLEAN NOT NULL DEFAULT FALSE,
    proposed_by TEXT NOT NULL,
    proposed_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    decided_by TEXT,
    decided_at BIGINT,
    started_at BIGINT,
    finished_at BIGINT,
    attempts INTEGER NOT NULL DEFAULT 0,
    outcome TEXT,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX actions_by_time ON actions (tenant_id, proposed_at);
CREATE TABLE tasks (
    tenant_id TEXT NOT NULL,
    id TEXT NOT NULL,
    title TEXT NOT NULL,
    due_date TEXT,
    status TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    completed_at BIGINT,
    action_id TEXT,
    PRIMARY KEY (tenant_id, id)
);
CREATE UNIQUE INDEX tasks_by_action ON tasks (tenant_id, action_id);
-- Who proposed, confirmed, rejected and executed what, and when. Append-only.
CREATE TABLE audit_log (
    id BIGSERIAL PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    event TEXT NOT NULL,
    subject TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX audit_by_tenant ON audit_log (tenant_id, id);
-- Workflows that run on a cadence (daily | weekly | monthly), set up by a confirmed run_workflow action.
CREATE TABLE workflow_schedules (
    tenant_id TEXT NOT NULL,
    id TEXT NOT NULL,
    workflow TEXT NOT NULL,
    cadence TEXT NOT NULL,
    params TEXT NOT NULL,
    next_run_at BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX workflow_schedules_due ON workflow_schedules (next_run_at);
-- LLM usage per tenant, month (YYYY-MM), provider and model.
CREATE TABLE llm_usage (
    tenant_id TEXT NOT NULL,
    month TEXT NOT NULL,
    provider TEXT NOT NULL,
    model TEXT NOT NULL,
    calls BIGINT NOT NULL,
    tokens_in BIGINT NOT NULL,
    tokens_out BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, month, provider, model)
);
ALTER TABLE actions ENABLE ROW LEVEL SECURITY;
ALTER TABLE actions FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON actions USING (tenant_id = current_setting('app.tenant_id', true)) WITH CHECK (tenant_id = current_setting('app.tenant_id', true));
ALTER TABLE tasks ENABLE ROW LEVEL SECURITY;
ALTER TABLE tasks FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON tasks USING (tenant_id = current_setting('app.tenant_id', true)) WITH CHECK (tenant_id = current_setting('app.tenant_id', true));
ALTER TABLE audit_log ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_log FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON audit_log USING (tenant_id = current_setting('app.tenant_id', true)) WITH CHECK (tenant_id = current_setting('app.tenant_id', true));
ALTER TABLE llm_usage ENABLE ROW LEVEL SECURITY;
ALTER TABLE llm_usage FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON llm_usage USING (tenant_id = current_setting('app.tenant_id', true)) WITH CHECK (tenant_id = current_setting('app.tenant_id', true));
