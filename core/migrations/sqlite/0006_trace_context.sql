-- The W3C traceparent of the work that wrote each event (a request, a sync page), so that its consumer
-- continues the same trace: kept through the outbox and the embedded log as Kafka keeps it in a header. A
-- sync run keeps the one of the request that queued it, so the run is part of that trace.
ALTER TABLE outbox ADD COLUMN traceparent TEXT;
ALTER TABLE bus_log ADD COLUMN traceparent TEXT;
ALTER TABLE sync_runs ADD COLUMN traceparent TEXT;
