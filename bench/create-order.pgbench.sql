-- The statements of our create transaction, as the server sends them for POST /v1/orders with a
-- new key, in the same round trips: BEGIN; the claim (the lock timeout, the placeholder record,
-- returning the transaction's time, the record lookup with its row lock, the timeout reset)
-- pipelined; the order, its two items, the finished record and COMMIT pipelined. Run by
-- `npm run bench` with pgbench (-M prepared, -D tenant=<id>), whose C client costs next to
-- nothing: the SQL limit of one create here.
\set k random(1, 9000000000000000000)
BEGIN;
\startpipeline
SET LOCAL lock_timeout = '5000ms';
INSERT INTO idempotency_keys (tenant_id, key, record_id, fingerprint, method, path,
    recovery_point, created_at, expires_at)
  VALUES (:tenant, 'pgb-' || :k, '',
    '3f1c2a9e0b7d4c6a8e5f1b2d3c4a5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d', 'POST', '/v1/orders',
    'started', now(), now())
  ON CONFLICT (tenant_id, key) DO NOTHING RETURNING created_at;
SELECT record_id, fingerprint, recovery_point, attempt, response_status, response_headers,
    response_body, expires_at <= now() AS expired,
    coalesce(locked_until > clock_timestamp(), false) AS lease_active,
    (extract(epoch FROM expires_at - clock_timestamp()) * 1000)::float8 AS expires_in_ms
  FROM idempotency_keys WHERE tenant_id = :tenant AND key = 'pgb-' || :k FOR UPDATE;
SET LOCAL lock_timeout TO DEFAULT;
\endpipeline
\startpipeline
INSERT INTO orders (tenant_id, id, status, currency, amount_total, customer_email, metadata,
    created_at, updated_at)
  VALUES (:tenant, 'ord_pgb' || :k, 'pending', 'EUR', 3900, 'ada@example.com',
    '{"cart_id":"cart_42"}'::jsonb, now(), now());
INSERT INTO order_items (tenant_id, order_id, line, sku, name, quantity, unit_amount, amount)
  VALUES (:tenant, 'ord_pgb' || :k, 1, 'TSHIRT', 'T-shirt', 2, 1500, 3000),
    (:tenant, 'ord_pgb' || :k, 2, 'MUG', 'Mug', 1, 900, 900);
WITH written AS (UPDATE idempotency_keys SET record_id = 'idk_pgb' || :k,
    fingerprint = '3f1c2a9e0b7d4c6a8e5f1b2d3c4a5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d',
    method = 'POST', path = '/v1/orders', recovery_point = 'finished', locked_until = NULL,
    attempt = 1, response_status = 201,
    response_headers = '{"content-type":"application/json","location":"/v1/orders/ord_pgb"}'::jsonb,
    response_body = '{"id":"ord_pgb","object":"order","status":"pending","currency":"EUR","amount_total":3900,"amount_refunded":0,"customer_email":"ada@example.com","metadata":{"cart_id":"cart_42"},"items":[{"line":1,"sku":"TSHIRT","name":"T-shirt","quantity":2,"unit_amount":1500,"amount":3000},{"line":2,"sku":"MUG","name":"Mug","quantity":1,"unit_amount":900,"amount":900}],"created_at":"2026-01-01T00:00:00.000Z","updated_at":"2026-01-01T00:00:00.000Z"}',
    created_at = now(), expires_at = now() + 86400000 * interval '1 millisecond'
  WHERE tenant_id = :tenant AND key = 'pgb-' || :k AND expires_at <= now() RETURNING 1)
  SELECT 1 / count(*) AS written FROM written;
END;
\endpipeline
