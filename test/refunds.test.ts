import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { expectedProblem, newKey, useDatabase } from "./helpers/harness.js";
import {
  ORDER_TOTAL,
  PAYABLE_ORDER,
  paymentRows,
  refundedTotal,
  startPaymentsWorld,
} from "./helpers/payments.js";

/** POST /v1/refunds against the simulator: amounts at the provider and in our rows agree. */
const { db } = useDatabase();
let world: Awaited<ReturnType<typeof startPaymentsWorld>>;
let me: Awaited<ReturnType<typeof world.tenant>>;

beforeAll(async () => {
  world = await startPaymentsWorld(db);
});
afterAll(() => world.close());
beforeEach(async () => {
  await world.sim.control.clearFaults();
  me = await world.tenant("refund");
});

async function paidPayment(): Promise<{ orderId: string; paymentId: string; intentId: string }> {
  const orderId = (await (await me.api.post("/v1/orders", PAYABLE_ORDER)).json()).id;
  const res = await me.api.post("/v1/payments", {
    order_id: orderId,
    payment_method: "pm_card_visa",
  });
  expect(res.status).toBe(201);
  const payment = await res.json();
  return { orderId, paymentId: payment.id, intentId: payment.provider_reference };
}

async function providerRefunded(intentId: string): Promise<number> {
  const refunds = await world.sim.control.refunds({ payment_intent: intentId });
  return refunds.filter((r) => r.status === "succeeded").reduce((sum, r) => sum + r.amount, 0);
}

const get = async (path: string) => (await me.api.get(path)).json();

describe("refunding a payment", () => {
  it("refunds part, then the rest by default; the order goes partially_refunded then refunded", async () => {
    const { orderId, paymentId, intentId } = await paidPayment();
    const partial = await me.api.post("/v1/refunds", { payment_id: paymentId, amount: 1000 });
    expect(partial.status).toBe(201);
    const refund = await partial.json();
    expect(refund).toEqual({
      id: expect.stringMatching(/^re_[0-9a-z]{26}$/),
      object: "refund",
      payment_id: paymentId,
      order_id: orderId,
      status: "succeeded",
      amount: 1000,
      currency: "EUR",
      failure_code: null,
      provider_reference: expect.stringMatching(/^re_/),
      created_at: expect.any(String),
      updated_at: expect.any(String),
    });
    expect(partial.headers.get("location")).toBe(`/v1/refunds/${refund.id}`);
    expect(await get(`/v1/refunds/${refund.id}`)).toEqual(refund);
    expect(await get(`/v1/orders/${orderId}`)).toMatchObject({
      status: "partially_refunded",
      amount_refunded: 1000,
    });

    const rest = await me.api.post("/v1/refunds", { payment_id: paymentId });
    expect(rest.status).toBe(201);
    expect((await rest.json()).amount).toBe(ORDER_TOTAL - 1000);
    expect(await get(`/v1/orders/${orderId}`)).toMatchObject({
      status: "refunded",
      amount_refunded: ORDER_TOTAL,
    });
    expect(await get(`/v1/payments/${paymentId}`)).toMatchObject({ amount_refunded: ORDER_TOTAL });
    expect(await providerRefunded(intentId)).toBe(ORDER_TOTAL);

    const more = await me.api.post("/v1/refunds", { payment_id: paymentId, amount: 1 });
    expect(more.status).toBe(409);
    expect(await more.json()).toEqual(
      expectedProblem("refund_exceeds_payment", {
        detail: `At most 0 of this payment's ${ORDER_TOTAL} can still be refunded.`,
        payment_id: paymentId,
      }),
    );
    expect(await paymentRows(db, me.tenant.id)).toMatchObject({ refunds: 2 });
  });

  it("replays a refund to a retry with its key without refunding twice", async () => {
    const { paymentId, intentId } = await paidPayment();
    const key = newKey();
    const first = await me.api.post("/v1/refunds", { payment_id: paymentId, amount: 700 }, { key });
    const retry = await me.api.post("/v1/refunds", { payment_id: paymentId, amount: 700 }, { key });
    expect(retry.status).toBe(201);
    expect(retry.headers.get("idempotent-replayed")).toBe("true");
    expect(await retry.text()).toBe(await first.text());
    expect(await providerRefunded(intentId)).toBe(700);
    expect(await refundedTotal(db, me.tenant.id, paymentId)).toBe(700);
  });

  it("answers 409 for a failed payment and 404 for an unknown one", async () => {
    const orderId = (await (await me.api.post("/v1/orders", PAYABLE_ORDER)).json()).id;
    const declined = await (
      await me.api.post("/v1/payments", {
        order_id: orderId,
        payment_method: "pm_card_chargeDeclined",
      })
    ).json();
    const res = await me.api.post("/v1/refunds", { payment_id: declined.payment_id });
    expect(res.status).toBe(409);
    expect(await res.json()).toEqual(
      expectedProblem("payment_not_refundable", { detail: "This payment is failed." }),
    );
    const missing = await me.api.post("/v1/refunds", {
      payment_id: "pay_01aaaaaaaaaaaaaaaaaaaaaaaa",
    });
    expect(missing.status).toBe(404);
    expect(await missing.json()).toEqual(expectedProblem("payment_not_found"));
    const other = await world.tenant("other");
    const { paymentId } = await paidPayment();
    const theirs = await other.api.post("/v1/refunds", { payment_id: paymentId });
    expect(theirs.status).toBe(404);
  });

  it("never refunds more than was captured under 10 concurrent refunds with different keys", async () => {
    const { orderId, paymentId, intentId } = await paidPayment();
    const answers = await Promise.all(
      Array.from({ length: 10 }, () =>
        me.api.post("/v1/refunds", { payment_id: paymentId, amount: 500 }),
      ),
    );
    const statuses = answers.map((res) => res.status);
    const made = statuses.filter((s) => s === 201).length;
    expect(made).toBe(ORDER_TOTAL / 500);
    expect(statuses.filter((s) => s === 409)).toHaveLength(10 - made);
    for (const res of answers.filter((r) => r.status === 409)) {
      expect((await res.json()).code).toBe("refund_exceeds_payment");
    }
    expect(await providerRefunded(intentId)).toBe(ORDER_TOTAL);
    expect(await refundedTotal(db, me.tenant.id, paymentId)).toBe(ORDER_TOTAL);
    expect(await get(`/v1/orders/${orderId}`)).toMatchObject({
      status: "refunded",
      amount_refunded: ORDER_TOTAL,
    });
    expect(await paymentRows(db, me.tenant.id)).toMatchObject({ refunds: made });
  });

  it("answers 503 when the provider's answer is lost, and the retry refunds once", async () => {
    const { paymentId, intentId } = await paidPayment();
    const key = newKey();
    await world.sim.control.setFaults({ lose_response: 2, path_prefix: "/v1/refunds" });
    const lost = await me.api.post("/v1/refunds", { payment_id: paymentId, amount: 900 }, { key });
    expect(lost.status).toBe(503);
    expect(await providerRefunded(intentId)).toBe(900);
    const retry = await me.api.post("/v1/refunds", { payment_id: paymentId, amount: 900 }, { key });
    expect(retry.status).toBe(201);
    expect(await providerRefunded(intentId)).toBe(900);
    expect(await refundedTotal(db, me.tenant.id, paymentId)).toBe(900);
    expect(await get(`/v1/payments/${paymentId}`)).toMatchObject({ amount_refunded: 900 });
  });
});

describe("the decision table for refunds", () => {
  it("stores nothing for a missing key, a malformed key or a schema error; the fixed retry runs", async () => {
    const { paymentId, intentId } = await paidPayment();
    const body = { payment_id: paymentId, amount: 300 };
    const missing = await me.api.post("/v1/refunds", body, { key: null });
    expect(await missing.json()).toEqual(expectedProblem("idempotency_key_missing"));
    const malformed = await me.api.post("/v1/refunds", body, { key: "not valid!" });
    expect(await malformed.json()).toEqual(expectedProblem("idempotency_key_invalid"));
    const key = newKey();
    const invalid = await me.api.post("/v1/refunds", { payment_id: paymentId, amount: 0 }, { key });
    expect(invalid.status).toBe(400);
    expect((await invalid.json()).code).toBe("validation_failed");
    expect(await paymentRows(db, me.tenant.id)).toMatchObject({ refunds: 0, keys: 2 });
    const fixed = await me.api.post("/v1/refunds", body, { key });
    expect(fixed.status).toBe(201);
    expect(fixed.headers.get("idempotent-replayed")).toBe("false");
    expect(await providerRefunded(intentId)).toBe(300);
  });

  it("answers 422 for the same key with another amount, and stores a 409 outcome for replay", async () => {
    const { paymentId, intentId } = await paidPayment();
    const key = newKey();
    await me.api.post("/v1/refunds", { payment_id: paymentId, amount: 300 }, { key });
    const reused = await me.api.post(
      "/v1/refunds",
      { payment_id: paymentId, amount: 301 },
      { key },
    );
    expect(reused.status).toBe(422);
    expect(await reused.json()).toEqual(expectedProblem("idempotency_key_reused"));

    const tooMuch = newKey();
    const body = { payment_id: paymentId, amount: ORDER_TOTAL };
    const first = await me.api.post("/v1/refunds", body, { key: tooMuch });
    expect(first.status).toBe(409);
    const replay = await me.api.post("/v1/refunds", body, { key: tooMuch });
    expect(replay.status).toBe(409);
    expect(replay.headers.get("idempotent-replayed")).toBe("true");
    expect(await replay.text()).toBe(await first.text());
    expect(await providerRefunded(intentId)).toBe(300);
  });

  it("treats an expired key as new: the refund runs again", async () => {
    const shortLived = await startPaymentsWorld(db, { config: { IDEMPOTENCY_TTL_MS: 1000 } });
    try {
      const them = await shortLived.tenant("ttl");
      const orderId = (await (await them.api.post("/v1/orders", PAYABLE_ORDER)).json()).id;
      const payment = await (
        await them.api.post("/v1/payments", { order_id: orderId, payment_method: "pm_card_visa" })
      ).json();
      const key = newKey();
      const body = { payment_id: payment.id, amount: 400 };
      const first = await (await them.api.post("/v1/refunds", body, { key })).json();
      await new Promise((resolve) => setTimeout(resolve, 1100));
      const again = await them.api.post("/v1/refunds", body, { key });
      expect(again.status).toBe(201);
      expect(again.headers.get("idempotent-replayed")).toBe("false");
      expect((await again.json()).id).not.toBe(first.id);
      expect(await refundedTotal(db, them.tenant.id, payment.id)).toBe(800);
      expect(await paymentRows(db, them.tenant.id)).toMatchObject({ refunds: 2 });
    } finally {
      await shortLived.close();
    }
  });
});
