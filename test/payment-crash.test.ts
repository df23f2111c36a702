import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import {
  apiClient,
  createTestTenant,
  holdRowLock,
  newKey,
  useDatabase,
} from "./helpers/harness.js";
import { eventually, PAYABLE_ORDER, paymentRows, recordOf } from "./helpers/payments.js";
import { REPO_ROOT, type ServerProcess, startServer } from "./helpers/server-process.js";
import { type SimulatorProcess, startSimulator } from "./helpers/simulator-process.js";

/**
 * The server process is SIGKILLed after the provider charged and before the outcome was
 * committed. The money was taken; the retry, or without one the completer, must record it,
 * with exactly one charge at the provider.
 */
const { db } = useDatabase();
let sim: SimulatorProcess;

/** Short lease and provider timeout, so a crashed attempt can be taken over within a test. */
const serverEnv = (extra: Record<string, string> = {}) => ({
  DATABASE_URL: inject("databaseUrl"),
  STRIPE_API_URL: sim.url,
  PAYMENT_LEASE_MS: "3000",
  PROVIDER_TIMEOUT_MS: "2000",
  PROVIDER_MAX_NETWORK_RETRIES: "0",
  COMPLETER_INTERVAL_MS: "0",
  ...extra,
});

beforeAll(async () => {
  // No webhook URL: the crashed payment's outcome must be recovered by us, not by an event.
  sim = await startSimulator();
});
afterAll(() => sim.stop());

/** Locks the tenant's payment row: the request's last phase blocks on it, after the provider call. */
async function holdPaymentRow(tenantId: string) {
  const hold = await holdRowLock(
    db,
    sql`SELECT pg_backend_pid() AS pid FROM payments WHERE tenant_id = ${tenantId} FOR UPDATE`,
  );
  await hold.blocked(1);
  return hold.release;
}

/** Pays an order on `server` and kills it while the charge's outcome is being recorded. */
async function crashMidPayment(server: ServerProcess) {
  const { tenant, apiKey } = await createTestTenant(db, "crash-pay");
  const api = apiClient(server.url, apiKey);
  const orderId = (await (await api.post("/v1/orders", PAYABLE_ORDER)).json()).id as string;
  const key = newKey();
  const body = { order_id: orderId, payment_method: "pm_card_visa" };
  await sim.control.setFaults({ latency_ms: 800, path_prefix: "/v1/payment_intents" });
  const inFlight = api.post("/v1/payments", body, { key }).catch((error: unknown) => error);
  await eventually(
    () => paymentRows(db, tenant.id),
    (rows) => rows.payments === 1,
  );
  const release = await holdPaymentRow(tenant.id);
  await sim.control.clearFaults();
  const charges = await sim.control.charges({ metadata: { order_id: orderId } });
  expect(charges).toHaveLength(1);

  expect(await server.kill("SIGKILL")).toBeNull();
  expect(await inFlight).toBeInstanceOf(Error);
  await release();

  const [payment] = await db.execute<{ status: string }>(
    sql`SELECT status FROM payments WHERE tenant_id = ${tenant.id}`,
  );
  expect(payment?.status).toBe("processing");
  expect(await recordOf(db, tenant.id, key)).toMatchObject({
    recoveryPoint: "payment_created",
    attempt: 1,
    responseStatus: null,
  });
  return { tenant, apiKey, orderId, key, body, intentId: charges[0]?.payment_intent };
}

async function expectPaidOnce(tenantId: string, orderId: string, intentId: unknown) {
  const [row] = await db.execute<{ payment: string; order: string; reference: string }>(sql`
    SELECT p.status AS payment, o.status AS order, p.provider_payment_intent_id AS reference
    FROM payments p JOIN orders o ON o.tenant_id = p.tenant_id AND o.id = p.order_id
    WHERE p.tenant_id = ${tenantId}`);
  expect(row).toEqual({ payment: "succeeded", order: "paid", reference: intentId });
  expect(await sim.control.charges({ metadata: { order_id: orderId } })).toHaveLength(1);
  expect(await sim.control.paymentIntents({ metadata: { order_id: orderId } })).toHaveLength(1);
  expect(await paymentRows(db, tenantId)).toMatchObject({ payments: 1 });
}

describe("a server killed after the provider charged", () => {
  it("is completed by the client's retry after a restart, with one charge", async () => {
    const crashed = await crashMidPayment(await startServer(serverEnv()));
    const restarted = await startServer(serverEnv());
    try {
      const api = apiClient(restarted.url, crashed.apiKey);
      // The dead attempt's lease (3 s) must run out first; the retry waits for it.
      const retry = await api.post("/v1/payments", crashed.body, { key: crashed.key });
      expect(retry.status).toBe(201);
      expect(retry.headers.get("idempotent-replayed")).toBe("false");
      expect((await retry.json()).status).toBe("succeeded");
      await expectPaidOnce(crashed.tenant.id, crashed.orderId, crashed.intentId);
      expect(await recordOf(db, crashed.tenant.id, crashed.key)).toMatchObject({
        recoveryPoint: "finished",
        attempt: 2,
        responseStatus: 201,
      });
      const again = await api.post("/v1/payments", crashed.body, { key: crashed.key });
      expect(again.headers.get("idempotent-replayed")).toBe("true");
    } finally {
      await restarted.kill("SIGTERM");
    }
  });

  it("is completed by the server's completer job when the client never retries", async () => {
    const crashed = await crashMidPayment(await startServer(serverEnv()));
    const restarted = await startServer(
      serverEnv({ COMPLETER_INTERVAL_MS: "300", COMPLETER_GRACE_MS: "0" }),
    );
    try {
      await eventually(
        () => recordOf(db, crashed.tenant.id, crashed.key),
        (record) => record?.recoveryPoint === "finished",
        15_000,
      );
      await expectPaidOnce(crashed.tenant.id, crashed.orderId, crashed.intentId);
      const late = await apiClient(restarted.url, crashed.apiKey).post(
        "/v1/payments",
        crashed.body,
        {
          key: crashed.key,
        },
      );
      expect(late.status).toBe(201);
      expect(late.headers.get("idempotent-replayed")).toBe("true");
    } finally {
      await restarted.kill("SIGTERM");
    }
  });

  it("is completed by `npm run completer`, which reports what it finished", async () => {
    const crashed = await crashMidPayment(await startServer(serverEnv()));
    await new Promise((resolve) => setTimeout(resolve, 3100));
    const { stderr } = await promisify(execFile)("npm", ["run", "--silent", "completer"], {
      cwd: REPO_ROOT,
      env: { ...process.env, ...serverEnv({ COMPLETER_GRACE_MS: "0" }), LOG_LEVEL: "warn" },
    });
    expect(stderr).toMatch(/completer: [1-9]\d* finished, 0 left for a later run/);
    await expectPaidOnce(crashed.tenant.id, crashed.orderId, crashed.intentId);
    expect(await recordOf(db, crashed.tenant.id, crashed.key)).toMatchObject({
      recoveryPoint: "finished",
      responseStatus: 201,
    });
  });
});
