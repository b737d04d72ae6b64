-- The pages a sync run has counted, by content digest: a page that reaches the workers twice — published by
-- two relays, or fetched again after the run's lease moved to another replica — is counted once. Rows are
-- removed when the run finishes.
CREATE TABLE sync_pages (
    tenant_id TEXT NOT NULL,
    sync_id TEXT NOT NULL,
    digest TEXT NOT NULL,
    PRIMARY KEY (sync_id, digest)
);
ALTER TABLE sync_pages ENABLE ROW LEVEL SECURITY;
ALTER TABLE sync_pages FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON sync_pages USING (tenant_id = current_setting('app.tenant_id', true)) WITH CHECK (tenant_id = current_setting('app.tenant_id', true));

-- Lease fencing: every acquisition of a connector's sync lease increments its epoch; checkpoints, the run's
-- end marker and renewals require the epoch they started with, so a replica that lost its lease (a pause,
-- a partition, retries that outlasted it) can no longer write for the run.
ALTER TABLE connector_schedule ADD COLUMN lease_epoch BIGINT NOT NULL DEFAULT 0;
