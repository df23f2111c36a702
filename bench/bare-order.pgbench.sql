-- The order's writes alone (the order and its two items, COMMIT), with no idempotency at all:
-- what PostgreSQL does for the business rows of one create. Run by `npm run bench` with pgbench.
\set k random(1, 9000000000000000000)
BEGIN;
INSERT INTO orders (tenant_id, id, status, currency, amount_total, customer_email, metadata)
  VALUES (:tenant, 'ord_pgbb' || :k, 'pending', 'EUR', 3900, 'ada@example.com',
    '{"cart_id":"cart_42"}')
  RETURNING *;
INSERT INTO order_items (tenant_id, order_id, line, sku, name, quantity, unit_amount, amount)
  VALUES (:tenant, 'ord_pgbb' || :k, 1, 'TSHIRT', 'T-shirt', 2, 1500, 3000),
    (:tenant, 'ord_pgbb' || :k, 2, 'MUG', 'Mug', 1, 900, 900)
  RETURNING *;
END;
