-- Per-day sums of orders, order lines and refunds, so that a metric over a year reads a few hundred rows
-- instead of every order in it (a 1M-order shop: 0.6 s on SQLite, 1.5 s on PostgreSQL for a year's
-- revenue). Each row holds what the definition in docs/metrics says for its day, source and currency (or
-- product title): counted orders, their revenue net of refunds and discounts, failed payments; counted lines;
-- refunds that are not tests. The loader keeps it true (`smb_workers::load`): every write or delete of an
-- order subtracts what its rows added, as stored, before the change, and adds them again after it.
CREATE TABLE daily_orders (
    tenant_id TEXT NOT NULL,
    day TEXT NOT NULL,
    source TEXT NOT NULL,
    currency TEXT NOT NULL,
    orders BIGINT NOT NULL,
    revenue_minor BIGINT NOT NULL,
    discounts_minor BIGINT NOT NULL,
    failed BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, day, source, currency)
);
-- Rows whose counts reached zero, found without reading the tenant's other rows, and deleted.
CREATE INDEX daily_orders_empty ON daily_orders(tenant_id) WHERE orders = 0 AND failed = 0;
-- Each customer's counted orders and revenue per calendar year and over all time (year '*'), over every
-- source and currency: distinct and top customers over a whole year, or all time, are read from here.
CREATE TABLE customer_years (
    tenant_id TEXT NOT NULL,
    year TEXT NOT NULL,
    customer_key TEXT NOT NULL,
    orders BIGINT NOT NULL,
    revenue_minor BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, year, customer_key)
);
CREATE INDEX customer_years_revenue ON customer_years(tenant_id, year, revenue_minor);
CREATE INDEX customer_years_empty ON customer_years(tenant_id) WHERE orders = 0;
CREATE TABLE daily_lines (
    tenant_id TEXT NOT NULL,
    day TEXT NOT NULL,
    source TEXT NOT NULL,
    title TEXT NOT NULL,
    lines BIGINT NOT NULL,
    units BIGINT NOT NULL,
    sales_minor BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, day, source, title)
);
CREATE INDEX daily_lines_empty ON daily_lines(tenant_id) WHERE lines = 0;
CREATE TABLE daily_refunds (
    tenant_id TEXT NOT NULL,
    day TEXT NOT NULL,
    source TEXT NOT NULL,
    refunds BIGINT NOT NULL,
    amount_minor BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, day, source)
);
CREATE INDEX daily_refunds_empty ON daily_refunds(tenant_id) WHERE refunds = 0;
INSERT INTO daily_orders (tenant_id, day, source, currency, orders, revenue_minor, discounts_minor, failed)
SELECT tenant_id, local_date, source, currency,
    SUM(CASE WHEN counted THEN 1 ELSE 0 END),
    SUM(CASE WHEN counted THEN total_minor - refunded_minor ELSE 0 END),
    SUM(CASE WHEN counted THEN discounts_minor ELSE 0 END),
    SUM(CASE WHEN status = 'failed' THEN 1 ELSE 0 END)
FROM orders WHERE counted OR status = 'failed' GROUP BY tenant_id, local_date, source, currency;
INSERT INTO customer_years (tenant_id, year, customer_key, orders, revenue_minor)
SELECT tenant_id, substr(local_date, 1, 4), customer_key, COUNT(*), SUM(total_minor - refunded_minor) FROM orders
WHERE counted AND customer_key IS NOT NULL GROUP BY tenant_id, substr(local_date, 1, 4), customer_key;
INSERT INTO customer_years (tenant_id, year, customer_key, orders, revenue_minor)
SELECT tenant_id, '*', customer_key, COUNT(*), SUM(total_minor - refunded_minor) FROM orders
WHERE counted AND customer_key IS NOT NULL GROUP BY tenant_id, customer_key;
INSERT INTO daily_lines (tenant_id, day, source, title, lines, units, sales_minor)
SELECT tenant_id, local_date, source, title, COUNT(*), SUM(quantity), SUM(price_minor * quantity)
FROM order_lines WHERE counted GROUP BY tenant_id, local_date, source, title;
INSERT INTO daily_refunds (tenant_id, day, source, refunds, amount_minor)
SELECT tenant_id, local_date, source, COUNT(*), SUM(amount_minor)
FROM refunds WHERE NOT test GROUP BY tenant_id, local_date, source;
