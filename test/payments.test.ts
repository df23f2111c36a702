import { sql } from "drizzle-orm";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { apiClient, expectedProblem, newKey, useDatabase } from "./helpers/harness.js";
import {
  eventually,
  ORDER_TOTAL,
  PAYABLE_ORDER,
  paymentRows,
  recordOf,
  startPaymentsWorld,
} from "./helpers/payments.js";

/**
 * POST /v1/payments through the real Stripe SDK against the simulator process, with the
 * database and the simulator's own counts checked after each call.
 */
const { db } = useDatabase();
let world: Awaited<ReturnType<typeof startPaymentsWorld>>;
let me: Awaited<ReturnType<typeof world.tenant>>;

beforeAll(async () => {
  world = await startPaymentsWorld(db, { config: { IDEMPOTENCY_WAIT_MS: 5000 } });
});
afterAll(() => world.close());
beforeEach(async () => {
  await world.sim.control.clearFaults();
  me = await world.tenant();
});

async function newOrder(): Promise<string> {
  const res = await me.api.post("/v1/orders", PAYABLE_ORDER);
  expect(res.status).toBe(201);
  return (await res.json()).id;
}

async function chargesFor(orderId: string) {
  return world.sim.control.charges({ metadata: { order_id: orderId } });
}

describe("paying an order", () => {
  it("charges its total once at the provider and marks it paid", async () => {
    const orderId = await newOrder();
    const key = newKey();
    const res = await me.api.post(
      "/v1/payments",
      { order_id: orderId, payment_method: "pm_card_visa" },
      { key },
    );
    expect(res.status).toBe(201);
    expect(res.headers.get("idempotent-replayed")).toBe("false");
    const payment = await res.json();
    expect(payment).toEqual({
      id: expect.stringMatching(/^pay_[0-9a-z]{26}$/),
      object: "payment",
      order_id: orderId,
      status: "succeeded",
      amount: ORDER_TOTAL,
      amount_refunded: 0,
      currency: "EUR",
      payment_method: "pm_card_visa",
      failure_code: null,
      failure_message: null,
      provider_reference: expect.stringMatching(/^pi_/),
      created_at: expect.any(String),
      updated_at: expect.any(String),
    });
    expect(res.headers.get("location")).toBe(`/v1/payments/${payment.id}`);

    const charges = await chargesFor(orderId);
    expect(charges).toHaveLength(1);
    expect(charges[0]).toMatchObject({ amount: ORDER_TOTAL, currency: "eur", status: "succeeded" });
    expect(charges[0]?.metadata).toEqual({
      tenant_id: me.tenant.id,
      order_id: orderId,
      payment_id: payment.id,
    });
    expect((await (await me.api.get(`/v1/orders/${orderId}`)).json()).status).toBe("paid");
    expect(await (await me.api.get(`/v1/payments/${payment.id}`)).json()).toEqual(payment);
    expect(await recordOf(db, me.tenant.id, key)).toMatchObject({
      recoveryPoint: "finished",
      responseStatus: 201,
      attempt: 1,
    });
  });

  it("replays the stored 201 to a retry without calling the provider again", async () => {
    const orderId = await newOrder();
    const key = newKey();
    const body = { order_id: orderId, payment_method: "pm_card_visa" };
    const first = await me.api.post("/v1/payments", body, { key });
    const before = await world.sim.control.requests({ idempotency_key: undefined });
    const retry = await me.api.post("/v1/payments", body, { key });
    expect(retry.status).toBe(201);
    expect(retry.headers.get("idempotent-replayed")).toBe("true");
    expect(await retry.text()).toBe(await first.text());
    expect(await world.sim.control.requests()).toHaveLength(before.length);
    expect(await chargesFor(orderId)).toHaveLength(1);
    expect(await paymentRows(db, me.tenant.id)).toMatchObject({ payments: 1, keys: 2 });
  });

  it("stores a decline as 402 payment_declined; the order stays payable with a new key", async () => {
    const orderId = await newOrder();
    const key = newKey();
    const declinedBody = {
      order_id: orderId,
      payment_method: "pm_card_chargeDeclinedInsufficientFunds",
    };
    const declined = await me.api.post("/v1/payments", declinedBody, { key });
    expect(declined.status).toBe(402);
    const problem = await declined.json();
    expect(problem).toEqual(
      expectedProblem("payment_declined", {
        detail: expect.any(String),
        payment_id: expect.stringMatching(/^pay_/),
        decline_code: "insufficient_funds",
      }),
    );
    const replay = await me.api.post("/v1/payments", declinedBody, { key });
    expect(replay.status).toBe(402);
    expect(replay.headers.get("idempotent-replayed")).toBe("true");
    expect((await (await me.api.get(`/v1/payments/${problem.payment_id}`)).json()).status).toBe(
      "failed",
    );
    expect((await (await me.api.get(`/v1/orders/${orderId}`)).json()).status).toBe("pending");

    const paid = await me.api.post("/v1/payments", {
      order_id: orderId,
      payment_method: "pm_card_visa",
    });
    expect(paid.status).toBe(201);
    const stats = await chargesFor(orderId);
    expect(stats.map((c) => c.status).sort()).toEqual(["failed", "succeeded"]);
    expect(await paymentRows(db, me.tenant.id)).toMatchObject({ payments: 2 });
  });

  it("answers 402 payment_method_invalid for a method the provider does not know", async () => {
    const orderId = await newOrder();
    const res = await me.api.post("/v1/payments", {
      order_id: orderId,
      payment_method: "pm_card_nope",
    });
    expect(res.status).toBe(402);
    expect(await res.json()).toEqual(
      expectedProblem("payment_method_invalid", {
        detail: expect.any(String),
        payment_id: expect.stringMatching(/^pay_/),
      }),
    );
    expect(await chargesFor(orderId)).toHaveLength(0);
  });

  it("stores 409 order_not_payable for a paid or cancelled order, and 404 for an unknown one", async () => {
    const paidOrder = await newOrder();
    await me.api.post("/v1/payments", { order_id: paidOrder, payment_method: "pm_card_visa" });
    const again = await me.api.post("/v1/payments", {
      order_id: paidOrder,
      payment_method: "pm_card_visa",
    });
    expect(again.status).toBe(409);
    expect(await again.json()).toEqual(
      expectedProblem("order_not_payable", { detail: "This order is paid." }),
    );
    const cancelled = await newOrder();
    await me.api.post(`/v1/orders/${cancelled}/cancel`);
    const key = newKey();
    const body = { order_id: cancelled, payment_method: "pm_card_visa" };
    expect((await me.api.post("/v1/payments", body, { key })).status).toBe(409);
    const replay = await me.api.post("/v1/payments", body, { key });
    expect(replay.headers.get("idempotent-replayed")).toBe("true");
    const missing = await me.api.post("/v1/payments", {
      order_id: "ord_01aaaaaaaaaaaaaaaaaaaaaaaa",
      payment_method: "pm_card_visa",
    });
    expect(missing.status).toBe(404);
    expect(await missing.json()).toEqual(expectedProblem("order_not_found"));
    expect(await chargesFor(paidOrder)).toHaveLength(1);
    expect(await chargesFor(cancelled)).toHaveLength(0);
  });

  it("cannot cancel an order while its payment is processing", async () => {
    const orderId = await newOrder();
    await world.sim.control.setFaults({ latency_ms: 1500, path_prefix: "/v1/payment_intents" });
    const paying = me.api.post("/v1/payments", {
      order_id: orderId,
      payment_method: "pm_card_visa",
    });
    await eventually(
      () => paymentRows(db, me.tenant.id),
      (rows) => rows.payments === 1,
    );
    const cancel = await me.api.post(`/v1/orders/${orderId}/cancel`);
    expect(cancel.status).toBe(409);
    expect((await cancel.json()).code).toBe("order_not_cancellable");
    expect((await paying).status).toBe(201);
    expect((await (await me.api.get(`/v1/orders/${orderId}`)).json()).status).toBe("paid");
  });
});

describe("the decision table for payments", () => {
  it("rejects a missing or malformed key and a schema error without storing anything", async () => {
    const orderId = await newOrder();
    const body = { order_id: orderId, payment_method: "pm_card_visa" };
    expect((await me.api.post("/v1/payments", body, { key: null })).status).toBe(400);
    expect((await me.api.post("/v1/payments", body, { key: "short" })).status).toBe(400);
    const key = newKey();
    const invalid = await me.api.post("/v1/payments", { order_id: orderId }, { key });
    expect(invalid.status).toBe(400);
    expect((await invalid.json()).code).toBe("validation_failed");
    expect(await paymentRows(db, me.tenant.id)).toMatchObject({ payments: 0, keys: 1 });
    const fixed = await me.api.post("/v1/payments", body, { key });
    expect(fixed.status).toBe(201);
    expect(fixed.headers.get("idempotent-replayed")).toBe("false");
    expect(await chargesFor(orderId)).toHaveLength(1);
  });

  it("answers 422 for the same key with another body, and runs the same key of another tenant", async () => {
    const orderId = await newOrder();
    const key = newKey();
    await me.api.post(
      "/v1/payments",
      { order_id: orderId, payment_method: "pm_card_visa" },
      { key },
    );
    const reused = await me.api.post(
      "/v1/payments",
      { order_id: orderId, payment_method: "pm_card_mastercard" },
      { key },
    );
    expect(reused.status).toBe(422);
    expect(await reused.json()).toEqual(expectedProblem("idempotency_key_reused"));

    const other = await world.tenant("other");
    const theirOrder = (await (await other.api.post("/v1/orders", PAYABLE_ORDER)).json()).id;
    const theirs = await other.api.post(
      "/v1/payments",
      { order_id: theirOrder, payment_method: "pm_card_visa" },
      { key },
    );
    expect(theirs.status).toBe(201);
    expect(theirs.headers.get("idempotent-replayed")).toBe("false");
    expect(await chargesFor(orderId)).toHaveLength(1);
    expect(await chargesFor(theirOrder)).toHaveLength(1);
  });

  it("20 concurrent identical requests: one charge, one payment, 20 identical answers", async () => {
    const orderId = await newOrder();
    const key = newKey();
    const body = { order_id: orderId, payment_method: "pm_card_visa" };
    const answers = await Promise.all(
      Array.from({ length: 20 }, async () => {
        const res = await me.api.post("/v1/payments", body, { key });
        return {
          status: res.status,
          replayed: res.headers.get("idempotent-replayed"),
          body: await res.text(),
        };
      }),
    );
    expect(answers.map((a) => a.status)).toEqual(Array(20).fill(201));
    expect(new Set(answers.map((a) => a.body)).size).toBe(1);
    expect(answers.filter((a) => a.replayed === "false")).toHaveLength(1);
    expect(await chargesFor(orderId)).toHaveLength(1);
    expect(
      (await world.sim.control.paymentIntents({ metadata: { order_id: orderId } })).length,
    ).toBe(1);
    expect(await paymentRows(db, me.tenant.id)).toMatchObject({ payments: 1 });
  });
});

describe("when the provider's outcome is unknown", () => {
  it("answers 503 when the response is lost after the charge; the retry finds the same charge", async () => {
    const orderId = await newOrder();
    const key = newKey();
    const body = { order_id: orderId, payment_method: "pm_card_visa" };
    // The SDK retries a reset connection once by itself: lose both answers.
    await world.sim.control.setFaults({ lose_response: 2, path_prefix: "/v1/payment_intents" });
    const lost = await me.api.post("/v1/payments", body, { key });
    expect(lost.status).toBe(503);
    expect(lost.headers.get("retry-after")).toBe("2");
    expect(lost.headers.get("idempotent-replayed")).toBeNull();
    expect((await lost.json()).code).toBe("provider_unavailable");
    expect(await chargesFor(orderId)).toHaveLength(1);
    expect(await recordOf(db, me.tenant.id, key)).toMatchObject({
      recoveryPoint: "payment_created",
      responseStatus: null,
    });

    const retry = await me.api.post("/v1/payments", body, { key });
    expect(retry.status).toBe(201);
    expect(retry.headers.get("idempotent-replayed")).toBe("false");
    const payment = await retry.json();
    expect(payment.status).toBe("succeeded");
    const charges = await chargesFor(orderId);
    expect(charges).toHaveLength(1);
    expect(payment.provider_reference).toBe(charges[0]?.payment_intent);
    expect(await paymentRows(db, me.tenant.id)).toMatchObject({ payments: 1 });
    expect(await recordOf(db, me.tenant.id, key)).toMatchObject({
      recoveryPoint: "finished",
      attempt: 2,
    });
  });

  it("answers 503 on a provider 500 and charges once when the retry succeeds", async () => {
    const orderId = await newOrder();
    const key = newKey();
    const body = { order_id: orderId, payment_method: "pm_card_visa" };
    await world.sim.control.setFaults({ error_500: 1, path_prefix: "/v1/payment_intents" });
    expect((await me.api.post("/v1/payments", body, { key })).status).toBe(503);
    expect(await chargesFor(orderId)).toHaveLength(0);
    const retry = await me.api.post("/v1/payments", body, { key });
    expect(retry.status).toBe(201);
    expect(await chargesFor(orderId)).toHaveLength(1);
  });
});

describe("a duplicate of a payment still in flight", () => {
  it("waits for the first and replays it, or gets 409 with Retry-After when the wait runs out", async () => {
    const impatient = await startPaymentsWorld(db, { config: { IDEMPOTENCY_WAIT_MS: 300 } });
    try {
      const them = await impatient.tenant();
      const orderId = (await (await them.api.post("/v1/orders", PAYABLE_ORDER)).json()).id;
      const key = newKey();
      const body = { order_id: orderId, payment_method: "pm_card_visa" };
      await impatient.sim.control.setFaults({
        latency_ms: 1500,
        path_prefix: "/v1/payment_intents",
      });
      const first = them.api.post("/v1/payments", body, { key });
      await eventually(
        () => paymentRows(db, them.tenant.id),
        (rows) => rows.payments === 1,
      );
      const busy = await them.api.post("/v1/payments", body, { key });
      expect(busy.status).toBe(409);
      expect(busy.headers.get("retry-after")).toBe("1");
      expect((await busy.json()).code).toBe("idempotency_key_in_progress");
      expect((await first).status).toBe(201);
    } finally {
      await impatient.close();
    }

    const orderId = await newOrder();
    const key = newKey();
    const body = { order_id: orderId, payment_method: "pm_card_visa" };
    await world.sim.control.setFaults({ latency_ms: 800, path_prefix: "/v1/payment_intents" });
    const first = me.api.post("/v1/payments", body, { key });
    await eventually(
      () => paymentRows(db, me.tenant.id),
      (rows) => rows.payments === 1,
    );
    const patient = await me.api.post("/v1/payments", body, { key });
    const original = await first;
    expect(patient.status).toBe(201);
    expect(patient.headers.get("idempotent-replayed")).toBe("true");
    expect(await patient.text()).toBe(await original.text());
    expect(await chargesFor(orderId)).toHaveLength(1);
  });
});

describe("error answers of the payment and refund routes", () => {
  const unknownPayment = "pay_01aaaaaaaaaaaaaaaaaaaaaaaa";
  it.each([
    ["POST", "/v1/payments"],
    ["POST", "/v1/refunds"],
    ["GET", `/v1/payments/${unknownPayment}`],
    ["GET", "/v1/refunds/re_01aaaaaaaaaaaaaaaaaaaaaaaa"],
  ])("%s %s answers 401 without an API key", async (method, path) => {
    const anonymous = apiClient(world.url, null);
    const key = newKey();
    const res =
      method === "GET"
        ? await anonymous.get(path)
        : await anonymous.post(path, { payment_id: unknownPayment }, { key });
    expect(res.status).toBe(401);
    expect(await res.json()).toEqual(expectedProblem("authentication_required"));
    const [stored] = await db.execute<{ n: number }>(
      sql`SELECT count(*)::int AS n FROM idempotency_keys WHERE key = ${key}`,
    );
    expect(stored?.n).toBe(0);
  });

  it.each([
    ["/v1/payments/pay_01aaaaaaaaaaaaaaaaaaaaaaaa", "payment_not_found"],
    ["/v1/refunds/re_01aaaaaaaaaaaaaaaaaaaaaaaa", "refund_not_found"],
  ] as const)("GET %s answers 404 %s, and 400 for a malformed id", async (path, code) => {
    const res = await me.api.get(path);
    expect(res.status).toBe(404);
    expect(await res.json()).toEqual(expectedProblem(code));
    const malformed = await me.api.get(path.replace(/_01a+$/, "_nope"));
    expect(malformed.status).toBe(400);
    expect((await malformed.json()).code).toBe("validation_failed");
  });

  it.each(["/v1/payments", "/v1/refunds"])(
    "POST %s answers 413 and 415 before anything is stored",
    async (path) => {
      // In process: over a socket the server may close before a 1 MB upload is fully written.
      const api = apiClient(world.app, me.apiKey);
      const big = await api.post(path, { payment_id: "x".repeat(1024 * 1024 + 1) });
      expect(big.status).toBe(413);
      const form = await api.post(path, "payment_id=x", {
        headers: { "Content-Type": "application/x-www-form-urlencoded" },
      });
      expect(form.status).toBe(415);
      expect(await paymentRows(db, me.tenant.id)).toEqual({
        payments: 0,
        refunds: 0,
        keys: 0,
        events: 0,
      });
    },
  );
});
