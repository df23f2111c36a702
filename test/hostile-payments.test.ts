import { and, eq } from "drizzle-orm";
import Stripe from "stripe";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { orders, payments } from "../src/db/schema.js";
import { createLogger } from "../src/logger.js";
import {
  apiClient,
  createTestTenant,
  expectedProblem,
  TEST_PROVIDER,
  testApp,
  useDatabase,
} from "./helpers/harness.js";
import { paymentRows } from "./helpers/payments.js";
import { type SimulatorProcess, startSimulator } from "./helpers/simulator-process.js";

/**
 * The payment provider's side of hostile input: a parameter the provider refuses is not a
 * decline, and a signed event that contradicts our records changes nothing. The simulator
 * delivers no webhooks here, so every event the app sees is one this suite sends.
 */
const { db } = useDatabase();
const output: string[] = [];
const logger = createLogger("info", { write: (line: string) => void output.push(line) });
let sim: SimulatorProcess;
let app: ReturnType<typeof testApp>;
let me: Awaited<ReturnType<typeof createTestTenant>> & { api: ReturnType<typeof apiClient> };

beforeAll(async () => {
  sim = await startSimulator();
  app = testApp(db, {}, { logger, providerUrl: sim.url });
  const created = await createTestTenant(db, "hostile-pay");
  me = { ...created, api: apiClient(app, created.apiKey) };
}, 30_000);
afterAll(() => sim?.stop());

async function newOrder(unitAmount = 1500) {
  const res = await me.api.post("/v1/orders", {
    currency: "EUR",
    items: [{ sku: "SKU-1", name: "Lamp", quantity: 1, unit_amount: unitAmount }],
  });
  expect(res.status).toBe(201);
  return (await res.json()).id as string;
}

async function paymentRow(id: string) {
  const [row] = await db
    .select()
    .from(payments)
    .where(and(eq(payments.tenantId, me.tenant.id), eq(payments.id, id)));
  return row;
}

async function orderStatus(id: string) {
  const [row] = await db
    .select({ status: orders.status })
    .from(orders)
    .where(and(eq(orders.tenantId, me.tenant.id), eq(orders.id, id)));
  return row?.status;
}

describe("a parameter the provider refuses", () => {
  it("is a stored 422 payment_request_invalid with the provider's code, not a 402 decline", async () => {
    // The simulator, as Stripe, takes at most eight digits: 1,000,000.00 EUR is one cent over.
    const orderId = await newOrder(100_000_000);
    const body = { order_id: orderId, payment_method: "pm_card_visa" };
    const key = `hostile-amount-${orderId}`;
    const res = await me.api.post("/v1/payments", body, { key });
    expect(res.status).toBe(422);
    const problem = await res.json();
    expect(problem).toEqual(
      expectedProblem("payment_request_invalid", {
        detail: expect.stringContaining("Amount must be no more than 99999999"),
        payment_id: expect.stringMatching(/^pay_/),
        provider_code: "amount_too_large",
      }),
    );
    const replay = await me.api.post("/v1/payments", body, { key });
    expect(replay.status).toBe(422);
    expect(replay.headers.get("idempotent-replayed")).toBe("true");
    expect(await replay.json()).toEqual(problem);

    expect(await paymentRow(problem.payment_id)).toMatchObject({
      status: "failed",
      failureCode: "amount_too_large",
      providerPaymentIntentId: null,
    });
    expect(await orderStatus(orderId)).toBe("pending");
    expect(await sim.control.paymentIntents()).toHaveLength(0);
  });
});

describe("a signed event that contradicts our records", () => {
  function deliver(event: unknown) {
    const payload = JSON.stringify(event);
    const signature = Stripe.webhooks.generateTestHeaderString({
      payload,
      secret: TEST_PROVIDER.webhookSecret,
    });
    return apiClient(app, null).post("/v1/webhooks/stripe", payload, {
      key: null,
      headers: { "Stripe-Signature": signature },
    });
  }

  function succeededEvent(id: string, intent: Record<string, unknown>) {
    return { id, object: "event", type: "payment_intent.succeeded", data: { object: intent } };
  }

  async function declinedPayment() {
    const orderId = await newOrder();
    const res = await me.api.post("/v1/payments", {
      order_id: orderId,
      payment_method: "pm_card_chargeDeclined",
    });
    expect(res.status).toBe(402);
    const paymentId = (await res.json()).payment_id as string;
    return { orderId, paymentId, row: await paymentRow(paymentId) };
  }

  it("leaves a declined payment declined when a forged success names another intent", async () => {
    const { orderId, paymentId, row } = await declinedPayment();
    expect(row?.status).toBe("failed");
    const before = await paymentRows(db, me.tenant.id);
    const from = output.length;
    const res = await deliver(
      succeededEvent("evt_forged_other_intent", {
        id: "pi_forged",
        object: "payment_intent",
        amount: 1500,
        currency: "eur",
        metadata: { tenant_id: me.tenant.id, payment_id: paymentId, order_id: orderId },
      }),
    );
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ received: true, result: "ignored" });
    expect(await paymentRow(paymentId)).toEqual(row);
    expect(await orderStatus(orderId)).toBe("pending");
    expect(await paymentRows(db, me.tenant.id)).toEqual(before);
    expect(output.slice(from).map((line) => JSON.parse(line))).toContainEqual(
      expect.objectContaining({
        level: 40,
        msg: "webhook does not match our records",
        event_id: "evt_forged_other_intent",
        mismatch: expect.any(String),
      }),
    );
  });

  it("leaves it declined even when the forged success carries its own intent id", async () => {
    const { orderId, paymentId, row } = await declinedPayment();
    const res = await deliver(
      succeededEvent("evt_forged_same_intent", {
        id: row?.providerPaymentIntentId ?? "pi_unknown",
        amount: 1500,
        currency: "eur",
        metadata: { tenant_id: me.tenant.id, payment_id: paymentId, order_id: orderId },
      }),
    );
    expect(await res.json()).toEqual({ received: true, result: "ignored" });
    expect(await paymentRow(paymentId)).toEqual(row);
    expect(await orderStatus(orderId)).toBe("pending");
  });

  it("ignores an event naming our payment under another tenant, or another amount", async () => {
    const other = await createTestTenant(db, "hostile-other");
    const { orderId, paymentId, row } = await declinedPayment();
    const before = await paymentRows(db, me.tenant.id);
    for (const [id, intent] of [
      [
        "evt_forged_tenant",
        { tenant_id: other.tenant.id, payment_id: paymentId, order_id: orderId, amount: 1500 },
      ],
      [
        "evt_forged_amount",
        { tenant_id: me.tenant.id, payment_id: paymentId, order_id: orderId, amount: 1 },
      ],
    ] as const) {
      const { amount, ...metadata } = intent;
      const res = await deliver(
        succeededEvent(id, { id: "pi_x", amount, currency: "eur", metadata }),
      );
      expect(await res.json()).toEqual({ received: true, result: "ignored" });
    }
    expect(await paymentRow(paymentId)).toEqual(row);
    expect(await paymentRows(db, me.tenant.id)).toEqual(before);
    expect(await paymentRows(db, other.tenant.id)).toEqual({
      payments: 0,
      refunds: 0,
      keys: 0,
      events: 0,
    });
  });
});
