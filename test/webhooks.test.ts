import { and, eq, sql } from "drizzle-orm";
import Stripe from "stripe";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { webhookEvents } from "../src/db/schema.js";
import { apiClient, expectedProblem, holdRowLock, newKey, useDatabase } from "./helpers/harness.js";
import { eventually, PAYABLE_ORDER, paymentRows, startPaymentsWorld } from "./helpers/payments.js";

/** Provider events: verified by signature, applied once, in any order with the API's answers. */
const { db } = useDatabase();
let world: Awaited<ReturnType<typeof startPaymentsWorld>>;
let me: Awaited<ReturnType<typeof world.tenant>>;

beforeAll(async () => {
  world = await startPaymentsWorld(db);
});
afterAll(() => world.close());
beforeEach(async () => {
  await world.sim.control.clearFaults();
  await world.sim.control.configureWebhooks({ duplicates: 1 });
  me = await world.tenant("hooks");
  provider = apiClient(world.url, null);
});

/** Requests as the provider sends them: no API key, a signature instead. */
let provider: ReturnType<typeof apiClient>;

async function newOrder(): Promise<string> {
  return (await (await me.api.post("/v1/orders", PAYABLE_ORDER)).json()).id;
}

/**
 * Locks the idempotency record of `key`: the API's last phase starts by locking it, so the
 * request stays in flight, after the provider answered, until `release`.
 */
async function holdRecord(key: string) {
  const hold = await holdRowLock(
    db,
    sql`SELECT pg_backend_pid() AS pid FROM idempotency_keys
      WHERE tenant_id = ${me.tenant.id} AND key = ${key} FOR UPDATE`,
  );
  return hold.release;
}

async function eventsApplied(eventType: string) {
  return db
    .select()
    .from(webhookEvents)
    .where(and(eq(webhookEvents.tenantId, me.tenant.id), eq(webhookEvents.type, eventType)));
}

describe("POST /v1/webhooks/stripe", () => {
  it("rejects a payload whose signature does not match, and stores nothing", async () => {
    const payload = JSON.stringify({
      id: "evt_forged",
      type: "payment_intent.succeeded",
      data: { object: {} },
    });
    const forged = Stripe.webhooks.generateTestHeaderString({ payload, secret: "whsec_wrong" });
    for (const signature of [forged, undefined]) {
      const res = await provider.post("/v1/webhooks/stripe", payload, {
        key: null,
        headers: signature ? { "Stripe-Signature": signature } : {},
      });
      expect(res.status).toBe(400);
      expect(await res.json()).toEqual(expectedProblem("webhook_signature_invalid"));
    }
    const [row] = await db.execute<{ n: number }>(
      sql`SELECT count(*)::int AS n FROM webhook_events WHERE event_id = 'evt_forged'`,
    );
    expect(row?.n).toBe(0);
  });

  it("answers 413 for a body over 1 MB and 415 for a body that is not JSON", async () => {
    const inProcess = apiClient(world.app, null);
    const big = await inProcess.post(
      "/v1/webhooks/stripe",
      { pad: "x".repeat(1024 * 1024) },
      { key: null },
    );
    expect(big.status).toBe(413);
    expect(await big.json()).toEqual(expectedProblem("payload_too_large"));
    const text = await provider.post("/v1/webhooks/stripe", "hello", {
      key: null,
      headers: { "Content-Type": "text/plain" },
    });
    expect(text.status).toBe(415);
    expect(await text.json()).toEqual(expectedProblem("unsupported_media_type"));
    const [applied] = await db.execute<{ n: number }>(
      sql`SELECT count(*)::int AS n FROM webhook_events WHERE tenant_id = ${me.tenant.id}`,
    );
    expect(applied?.n).toBe(0);
  });

  it("acknowledges a signed event about nothing of ours without applying anything", async () => {
    const payload = JSON.stringify({
      id: "evt_unrelated",
      object: "event",
      type: "customer.created",
      data: { object: { id: "cus_1", object: "customer" } },
    });
    const signature = Stripe.webhooks.generateTestHeaderString({
      payload,
      secret: world.sim.webhookSecret,
    });
    const res = await provider.post("/v1/webhooks/stripe", payload, {
      key: null,
      headers: { "Stripe-Signature": signature },
    });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ received: true, result: "ignored" });
  });

  it("applies a payment event delivered 3 times, before the API call returned, exactly once", async () => {
    await world.sim.control.configureWebhooks({ duplicates: 3 });
    await world.sim.control.setFaults({ latency_ms: 400, path_prefix: "/v1/payment_intents" });
    const orderId = await newOrder();
    const key = newKey();
    const paying = me.api.post(
      "/v1/payments",
      { order_id: orderId, payment_method: "pm_card_visa" },
      { key },
    );
    let settled = false;
    void paying.then(() => {
      settled = true;
    });
    await eventually(
      () => paymentRows(db, me.tenant.id),
      (rows) => rows.payments === 1,
    );
    const release = await holdRecord(key);

    // The charge happened and its event arrived three times while the API call is still held.
    const applied = await eventually(
      async () =>
        (await world.sim.control.events({ type: "payment_intent.succeeded" })).filter(
          (e) =>
            (e.data.object as { metadata?: Record<string, string> }).metadata?.order_id === orderId,
        ),
      (events) => events[0]?.deliveries.filter((d) => d.status === "succeeded").length === 3,
    );
    expect(applied).toHaveLength(1);
    expect(settled).toBe(false);
    expect(await eventsApplied("payment_intent.succeeded")).toHaveLength(1);
    const order = await (await me.api.get(`/v1/orders/${orderId}`)).json();
    expect(order.status).toBe("paid");

    await release();
    const res = await paying;
    expect(res.status).toBe(201);
    const payment = await res.json();
    expect(payment.status).toBe("succeeded");
    expect(payment.provider_reference).toBe(
      (applied[0]?.data.object as { id?: string } | undefined)?.id,
    );
    expect(await world.sim.control.charges({ metadata: { order_id: orderId } })).toHaveLength(1);
    expect(await eventsApplied("payment_intent.succeeded")).toHaveLength(1);
  });

  it("applies a refund event delivered 3 times exactly once: the amount is counted once", async () => {
    const orderId = await newOrder();
    const payment = await (
      await me.api.post("/v1/payments", { order_id: orderId, payment_method: "pm_card_visa" })
    ).json();
    await world.sim.control.configureWebhooks({ duplicates: 3 });
    await world.sim.control.setFaults({ latency_ms: 400, path_prefix: "/v1/refunds" });
    const key = newKey();
    const refunding = me.api.post("/v1/refunds", { payment_id: payment.id, amount: 1200 }, { key });
    await eventually(
      () => paymentRows(db, me.tenant.id),
      (rows) => rows.refunds === 1,
    );
    const release = await holdRecord(key);
    await eventually(
      async () =>
        (await world.sim.control.events({ type: "charge.refunded" })).filter(
          (e) =>
            (e.data.object as { payment_intent?: string }).payment_intent ===
            payment.provider_reference,
        ),
      (events) => events[0]?.deliveries.filter((d) => d.status === "succeeded").length === 3,
    );
    expect(await eventsApplied("charge.refunded")).toHaveLength(1);
    expect(await (await me.api.get(`/v1/orders/${orderId}`)).json()).toMatchObject({
      status: "partially_refunded",
      amount_refunded: 1200,
    });
    await release();
    const res = await refunding;
    expect(res.status).toBe(201);
    expect((await res.json()).status).toBe("succeeded");
    expect(await (await me.api.get(`/v1/payments/${payment.id}`)).json()).toMatchObject({
      amount_refunded: 1200,
    });
    const atProvider = await world.sim.control.refunds({
      payment_intent: payment.provider_reference,
    });
    expect(atProvider.map((r) => r.amount)).toEqual([1200]);
  });

  it("ignores a redelivery of an applied event", async () => {
    const orderId = await newOrder();
    await me.api.post("/v1/payments", {
      order_id: orderId,
      payment_method: "pm_card_chargeDeclined",
    });
    const [event] = (
      await world.sim.control.events({ type: "payment_intent.payment_failed" })
    ).filter(
      (e) =>
        (e.data.object as { metadata?: Record<string, string> }).metadata?.order_id === orderId,
    );
    if (!event) throw new Error("no payment_failed event");
    await eventually(
      () => eventsApplied("payment_intent.payment_failed"),
      (rows) => rows.length === 1,
    );
    await world.sim.control.resendEvent(event.id);
    await eventually(
      async () =>
        (
          await world.sim.control.events({ object_id: (event.data.object as { id: string }).id })
        )[0],
      (view) => (view?.deliveries.filter((d) => d.status === "succeeded").length ?? 0) === 2,
    );
    expect(await eventsApplied("payment_intent.payment_failed")).toHaveLength(1);
    expect((await (await me.api.get(`/v1/orders/${orderId}`)).json()).status).toBe("pending");
  });
});
