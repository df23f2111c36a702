/**
 * The peer the benchmark compares against: idempotency keys the way most tutorials add them
 * to an Express app. Look the key up; if it is new, write the order, then store the key with
 * the response. No transaction and no lock, so two concurrent requests with one key both
 * create an order, and a crash between the writes leaves an order without its key. This is
 * what a team writes when it does not use a layer like ours; the benchmark measures what that
 * shortcut is worth in speed, on the same database, tables and order.
 *
 * Run by `bench/run.ts` as a child process: `DATABASE_URL`, `BENCH_TENANT_ID` (whose orders
 * these are) and `DATABASE_POOL_MAX`; it prints `listening <url>` on stdout.
 */
import { randomBytes } from "node:crypto";
import type { AddressInfo } from "node:net";
import express from "express";
import postgres from "postgres";

const databaseUrl = process.env.DATABASE_URL;
const tenantId = process.env.BENCH_TENANT_ID;
if (!databaseUrl || !tenantId) throw new Error("DATABASE_URL and BENCH_TENANT_ID are required");

const sql = postgres(databaseUrl, {
  max: Number(process.env.DATABASE_POOL_MAX ?? 10),
  onnotice: () => {},
  connection: { application_name: "bench-naive-peer" },
});
await sql`CREATE TABLE IF NOT EXISTS naive_idempotency_keys (
  key text PRIMARY KEY, status integer NOT NULL, body text NOT NULL)`;

interface Item {
  sku: string;
  name: string;
  quantity: number;
  unit_amount: number;
}

const app = express();
app.use(express.json());

app.post("/v1/orders", async (req, res) => {
  const key = req.header("idempotency-key");
  if (!key) {
    res.status(400).json({ error: "Idempotency-Key required" });
    return;
  }
  const [seen] = await sql<{ status: number; body: string }[]>`
    SELECT status, body FROM naive_idempotency_keys WHERE key = ${key}`;
  if (seen) {
    res.status(seen.status).type("application/json").send(seen.body);
    return;
  }
  const input = req.body as { currency: string; items: Item[]; customer_email?: string };
  const id = `ord_${randomBytes(13).toString("hex")}`;
  const lines = input.items.map((item, index) => ({
    tenant_id: tenantId,
    order_id: id,
    line: index + 1,
    sku: item.sku,
    name: item.name,
    quantity: item.quantity,
    unit_amount: item.unit_amount,
    amount: item.quantity * item.unit_amount,
  }));
  const total = lines.reduce((sum, line) => sum + line.amount, 0);
  const [order] = await sql`
    INSERT INTO orders (tenant_id, id, status, currency, amount_total, customer_email, metadata)
    VALUES (${tenantId}, ${id}, 'pending', ${input.currency}, ${total},
      ${input.customer_email ?? null}, ${sql.json({})})
    RETURNING *`;
  const items = await sql`INSERT INTO order_items ${sql(lines)} RETURNING *`;
  const body = JSON.stringify({ ...order, items });
  await sql`INSERT INTO naive_idempotency_keys (key, status, body) VALUES (${key}, 201, ${body})`;
  res.status(201).type("application/json").send(body);
});

const server = app.listen(0, "127.0.0.1", () => {
  const { port } = server.address() as AddressInfo;
  process.stdout.write(`listening http://127.0.0.1:${port}\n`);
});
process.once("SIGTERM", () => {
  server.close();
  void sql.end({ timeout: 5 }).then(() => process.exit(0));
});
