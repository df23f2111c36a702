import type { AddressInfo } from "node:net";
import { serve } from "@hono/node-server";
import { and, count, eq, sql } from "drizzle-orm";
import type { AppDeps } from "../../src/app.js";
import type { Database } from "../../src/db/client.js";
import { idempotencyKeys, payments, refunds, webhookEvents } from "../../src/db/schema.js";
import { apiClient, createTestTenant, testApp } from "./harness.js";
import {
  type SimulatorProcess,
  type StartSimulatorOptions,
  startSimulator,
} from "./simulator-process.js";

/** Serves an in-process app on a free local port, so the simulator can deliver webhooks to it. */
export async function listen(app: { fetch: (request: Request) => Response | Promise<Response> }) {
  const server = serve({ fetch: app.fetch, port: 0, hostname: "127.0.0.1" });
  await new Promise<void>((resolve) => server.once("listening", () => resolve()));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/**
 * The app on a test database, talking to a real simulator process through the Stripe SDK, and
 * listening over HTTP so the simulator's webhooks reach it.
 */
export async function startPaymentsWorld(
  db: Database,
  options: { config?: Partial<AppDeps["config"]>; simulator?: StartSimulatorOptions } = {},
) {
  const sim: SimulatorProcess = await startSimulator(options.simulator);
  const app = testApp(db, options.config, { providerUrl: sim.url });
  const server = await listen(app);
  await sim.control.configureWebhooks({ url: `${server.url}/v1/webhooks/stripe` });
  return {
    sim,
    app,
    url: server.url,
    /** A new tenant with its API client on this app. */
    async tenant(label = "pay") {
      const { tenant, apiKey } = await createTestTenant(db, label);
      return { tenant, apiKey, api: apiClient(server.url, apiKey) };
    },
    async close() {
      await server.close();
      await sim.stop();
    },
  };
}

export const PAYABLE_ORDER = {
  currency: "EUR",
  items: [{ sku: "SKU-1", name: "Lamp", quantity: 2, unit_amount: 1750 }],
};
export const ORDER_TOTAL = 3500;

/** What a tenant's payments left in the database. */
export async function paymentRows(db: Database, tenantId: string) {
  const [[p], [r], [k], [e]] = await Promise.all([
    db.select({ n: count() }).from(payments).where(eq(payments.tenantId, tenantId)),
    db.select({ n: count() }).from(refunds).where(eq(refunds.tenantId, tenantId)),
    db.select({ n: count() }).from(idempotencyKeys).where(eq(idempotencyKeys.tenantId, tenantId)),
    db.select({ n: count() }).from(webhookEvents).where(eq(webhookEvents.tenantId, tenantId)),
  ]);
  return { payments: p?.n ?? 0, refunds: r?.n ?? 0, keys: k?.n ?? 0, events: e?.n ?? 0 };
}

export async function recordOf(db: Database, tenantId: string, key: string) {
  const [record] = await db
    .select()
    .from(idempotencyKeys)
    .where(and(eq(idempotencyKeys.tenantId, tenantId), eq(idempotencyKeys.key, key)));
  return record;
}

/** Waits until `check` holds, polling: for effects that arrive asynchronously (webhooks). */
export async function eventually<T>(
  check: () => Promise<T>,
  accept: (value: T) => boolean,
  timeoutMs = 10_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (accept(value)) return value;
    if (Date.now() > deadline)
      throw new Error(`condition not met: last value ${JSON.stringify(value)}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Sum of the succeeded refunds' amounts of a payment, from our database. */
export async function refundedTotal(db: Database, tenantId: string, paymentId: string) {
  const [row] = await db.execute<{ total: string }>(sql`
    SELECT coalesce(sum(amount), 0) AS total FROM refunds
    WHERE tenant_id = ${tenantId} AND payment_id = ${paymentId} AND status = 'succeeded'`);
  return Number(row?.total ?? 0);
}
