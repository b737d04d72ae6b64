-- Covering indexes for the metrics queries: answers read these instead of the wide rows (which carry the
-- raw source records).
CREATE INDEX orders_metrics ON orders(tenant_id, local_date, counted, status, source, customer_key, total_minor, refunded_minor, discounts_minor, customer_name);
CREATE INDEX order_lines_metrics ON order_lines(tenant_id, local_date, counted, source, title, quantity, price_minor, order_external_id);
CREATE INDEX refunds_metrics ON refunds(tenant_id, local_date, test, source, amount_minor);
