import { once } from "node:events";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Stripe from "stripe";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import {
  SIMULATOR_SECRET_KEY,
  type SimulatorProcess,
  startSimulator,
} from "./helpers/simulator-process.js";

const { StripeAPIError, StripeAuthenticationError, StripeCardError, StripeConnectionError } =
  Stripe.errors;
const { StripeIdempotencyError, StripeInvalidRequestError } = Stripe.errors;

/** A confirmed card payment as the app creates it. */
function payment(
  overrides: Partial<Stripe.PaymentIntentCreateParams> = {},
): Stripe.PaymentIntentCreateParams {
  return {
    amount: 1000,
    currency: "usd",
    payment_method: "pm_card_visa",
    confirm: true,
    ...overrides,
  };
}

/** The rejection of `promise`, failing the test when it resolves. */
async function rejectionOf<E extends Error = Stripe.errors.StripeError>(
  promise: Promise<unknown>,
): Promise<E> {
  try {
    await promise;
  } catch (error) {
    return error as E;
  }
  throw new Error("expected the request to fail");
}

/** Polls `probe` until it returns a value other than undefined. */
async function waitFor<T>(probe: () => Promise<T | undefined>, timeoutMs = 5_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) {
      return value;
    }
    if (Date.now() > deadline) {
      throw new Error(`condition not met within ${timeoutMs} ms`);
    }
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

interface ReceivedWebhook {
  headers: IncomingHttpHeaders;
  body: string;
}

/** A tiny webhook endpoint that records every request and answers `status(n)` to the n-th. */
async function startReceiver(status: (index: number) => number = () => 200) {
  const received: ReceivedWebhook[] = [];
  const server: Server = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on("data", (chunk: Buffer) => chunks.push(chunk));
    request.on("end", () => {
      received.push({ headers: request.headers, body: Buffer.concat(chunks).toString("utf8") });
      response.writeHead(status(received.length)).end();
    });
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/webhooks/stripe`,
    received,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

describe("stripe simulator (one shared process)", () => {
  let sim: SimulatorProcess;
  let stripe: Stripe;

  beforeAll(async () => {
    sim = await startSimulator();
    stripe = sim.stripe();
  }, 30_000);

  afterAll(async () => {
    await sim?.stop();
  });

  beforeEach(async () => {
    await sim.control.reset();
  });

  describe("payment intents", () => {
    it("creates a succeeded PaymentIntent with a captured charge and retrieves it", async () => {
      const created = await stripe.paymentIntents.create(
        payment({ currency: "EUR", description: "order 42", metadata: { order_id: "42" } }),
      );

      expect(created).toMatchObject({
        object: "payment_intent",
        amount: 1000,
        amount_received: 1000,
        currency: "eur",
        status: "succeeded",
        livemode: false,
        description: "order 42",
        metadata: { order_id: "42" },
        payment_method: "pm_card_visa",
        last_payment_error: null,
      });
      expect(created.id).toMatch(/^pi_/);
      expect(created.latest_charge).toMatch(/^ch_/);
      expect(created.lastResponse.requestId).toMatch(/^req_/);

      const retrieved = await stripe.paymentIntents.retrieve(created.id);
      expect(retrieved).toEqual(created);

      const expanded = await stripe.paymentIntents.retrieve(created.id, {
        expand: ["latest_charge"],
      });
      expect(expanded.latest_charge).toMatchObject({
        id: created.latest_charge,
        object: "charge",
        status: "succeeded",
        paid: true,
        captured: true,
        amount_captured: 1000,
        amount_refunded: 0,
        payment_intent: created.id,
        metadata: { order_id: "42" },
      });
      expect(await sim.control.stats()).toMatchObject({
        payment_intents: 1,
        charges: 1,
        declines: 0,
        amount_captured: 1000,
      });
    });

    it("rejects a key that is not a test secret key with StripeAuthenticationError", async () => {
      const error = await rejectionOf(
        new Stripe("sk_live_not_accepted_here", {
          host: sim.host,
          port: sim.port,
          protocol: "http",
          maxNetworkRetries: 0,
        }).paymentIntents.retrieve("pi_any"),
      );

      expect(error).toBeInstanceOf(StripeAuthenticationError);
      expect(error.statusCode).toBe(401);
    });

    it("answers 404 resource_missing for an unknown PaymentIntent", async () => {
      const error = await rejectionOf(stripe.paymentIntents.retrieve("pi_unknown"));

      expect(error).toBeInstanceOf(StripeInvalidRequestError);
      expect(error).toMatchObject({
        statusCode: 404,
        code: "resource_missing",
        param: "intent",
        message: "No such payment_intent: 'pi_unknown'",
      });
    });

    describe.each([
      ["pm_card_chargeDeclined", "generic_decline", "Your card was declined."],
      [
        "pm_card_chargeDeclinedInsufficientFunds",
        "insufficient_funds",
        "Your card has insufficient funds.",
      ],
    ])("declined by %s", (paymentMethod, declineCode, message) => {
      it("raises StripeCardError and keeps the declined PaymentIntent retrievable", async () => {
        const error = await rejectionOf(
          stripe.paymentIntents.create(payment({ payment_method: paymentMethod })),
        );

        expect(error).toBeInstanceOf(StripeCardError);
        expect(error).toMatchObject({
          statusCode: 402,
          code: "card_declined",
          decline_code: declineCode,
          message,
        });
        const declined = error.payment_intent;
        expect(declined).toMatchObject({
          status: "requires_payment_method",
          payment_method: null,
          amount_received: 0,
          last_payment_error: {
            type: "card_error",
            code: "card_declined",
            decline_code: declineCode,
          },
        });
        if (declined === undefined) {
          throw new Error("the card error carries no payment_intent");
        }
        const retrieved = await stripe.paymentIntents.retrieve(declined.id, {
          expand: ["latest_charge"],
        });
        expect(retrieved.status).toBe("requires_payment_method");
        expect(retrieved.latest_charge).toMatchObject({
          status: "failed",
          paid: false,
          failure_code: "card_declined",
          outcome: { reason: declineCode, type: "issuer_declined" },
        });
        expect(await sim.control.stats()).toMatchObject({
          payment_intents: 1,
          charges: 0,
          declines: 1,
          amount_captured: 0,
        });
      });
    });

    describe.each([
      ["a missing amount", { amount: undefined }, "parameter_missing", "amount"],
      ["a zero amount", { amount: 0 }, "parameter_invalid_integer", "amount"],
      ["a fractional amount", { amount: 10.5 }, "parameter_invalid_integer", "amount"],
      ["a missing currency", { currency: undefined }, "parameter_missing", "currency"],
      ["a currency that is not three letters", { currency: "dollars" }, undefined, "currency"],
      [
        "an unknown payment method",
        { payment_method: "pm_nope" },
        "resource_missing",
        "payment_method",
      ],
      ["an unknown parameter", { colour: "red" }, "parameter_unknown", "colour"],
    ])("with %s", (_name, overrides, code, param) => {
      it("answers 400 invalid_request_error and creates nothing", async () => {
        const params = { ...payment(), ...overrides } as Stripe.PaymentIntentCreateParams;
        const error = await rejectionOf(stripe.paymentIntents.create(params));

        expect(error).toBeInstanceOf(StripeInvalidRequestError);
        expect(error.statusCode).toBe(400);
        expect(error.rawType).toBe("invalid_request_error");
        expect(error.code).toBe(code);
        expect(error.param).toBe(param);
        expect(await sim.control.stats()).toMatchObject({ payment_intents: 0, charges: 0 });
      });
    });
  });

  describe("idempotency", () => {
    it("replays the stored response for a repeated key without charging again", async () => {
      const first = await stripe.paymentIntents.create(payment(), { idempotencyKey: "order-1" });
      const second = await stripe.paymentIntents.create(payment(), { idempotencyKey: "order-1" });

      expect(second.id).toBe(first.id);
      expect(second.lastResponse.headers["idempotent-replayed"]).toBe("true");
      expect(second.lastResponse.headers["original-request"]).toBe(first.lastResponse.requestId);
      expect(first.lastResponse.headers["idempotent-replayed"]).toBeUndefined();
      expect(await sim.control.stats()).toMatchObject({
        payment_intents: 1,
        charges: 1,
        idempotent_replays: 1,
      });
    });

    it("replays the body byte for byte, declines included", async () => {
      const send = () =>
        fetch(`${sim.url}/v1/payment_intents`, {
          method: "POST",
          headers: {
            authorization: `Bearer ${SIMULATOR_SECRET_KEY}`,
            "content-type": "application/x-www-form-urlencoded",
            "idempotency-key": "declined-order",
          },
          body: "amount=500&currency=usd&payment_method=pm_card_chargeDeclined&confirm=true",
        });
      const first = await send();
      const second = await send();

      expect(first.status).toBe(402);
      expect(second.status).toBe(402);
      expect(second.headers.get("idempotent-replayed")).toBe("true");
      expect(await second.text()).toBe(await first.text());
      expect(await sim.control.stats()).toMatchObject({ payment_intents: 1, declines: 1 });
    });

    it("rejects a used key with other parameters or on another endpoint", async () => {
      const original = await stripe.paymentIntents.create(payment(), { idempotencyKey: "k-1" });

      const otherParams = await rejectionOf(
        stripe.paymentIntents.create(payment({ amount: 2000 }), { idempotencyKey: "k-1" }),
      );
      expect(otherParams).toBeInstanceOf(StripeIdempotencyError);
      expect(otherParams).toMatchObject({ statusCode: 400, rawType: "idempotency_error" });
      expect(otherParams.message).toContain("same parameters");

      const otherEndpoint = await rejectionOf(
        stripe.refunds.create({ payment_intent: original.id }, { idempotencyKey: "k-1" }),
      );
      expect(otherEndpoint).toBeInstanceOf(StripeIdempotencyError);
      expect(otherEndpoint.message).toContain("('/v1/refunds' vs '/v1/payment_intents')");
      expect(await sim.control.stats()).toMatchObject({
        payment_intents: 1,
        charges: 1,
        refunds: 0,
      });
    });

    it("stores no validation error, so the key works for the fixed request", async () => {
      const invalid = await rejectionOf(
        stripe.paymentIntents.create(payment({ amount: 0 }), { idempotencyKey: "fix-me" }),
      );
      expect(invalid).toBeInstanceOf(StripeInvalidRequestError);

      const fixed = await stripe.paymentIntents.create(payment(), { idempotencyKey: "fix-me" });
      expect(fixed.status).toBe("succeeded");
      expect(fixed.lastResponse.headers["idempotent-replayed"]).toBeUndefined();
    });

    it("creates exactly one charge for 10 concurrent identical requests with one key", async () => {
      const results = await Promise.all(
        Array.from({ length: 10 }, () =>
          stripe.paymentIntents.create(payment({ metadata: { order_id: "race" } }), {
            idempotencyKey: "race-key",
          }),
        ),
      );

      expect(new Set(results.map((result) => result.id)).size).toBe(1);
      expect(await sim.control.stats()).toMatchObject({
        payment_intents: 1,
        charges: 1,
        idempotent_replays: 9,
      });
    });
  });

  describe("refunds", () => {
    it("refunds part, then the rest, then rejects a further refund", async () => {
      const paid = await stripe.paymentIntents.create(payment());

      const partial = await stripe.refunds.create({
        payment_intent: paid.id,
        amount: 300,
        metadata: { reason_code: "damaged" },
      });
      expect(partial).toMatchObject({
        object: "refund",
        amount: 300,
        status: "succeeded",
        currency: "usd",
        charge: paid.latest_charge,
        payment_intent: paid.id,
        metadata: { reason_code: "damaged" },
      });

      const rest = await stripe.refunds.create({ payment_intent: paid.id });
      expect(rest.amount).toBe(700);
      expect(await stripe.refunds.retrieve(partial.id)).toEqual(partial);

      const again = await rejectionOf(stripe.refunds.create({ payment_intent: paid.id }));
      expect(again).toBeInstanceOf(StripeInvalidRequestError);
      expect(again.code).toBe("charge_already_refunded");

      const charge = await stripe.charges.retrieve(String(paid.latest_charge));
      expect(charge).toMatchObject({ amount_refunded: 1000, refunded: true });
      expect(await sim.control.stats()).toMatchObject({
        charges: 1,
        refunds: 2,
        amount_captured: 1000,
        amount_refunded: 1000,
      });
    });

    it("rejects a refund larger than what remains with amount_too_large", async () => {
      const paid = await stripe.paymentIntents.create(payment());
      await stripe.refunds.create({ charge: String(paid.latest_charge), amount: 600 });

      const tooMuch = await rejectionOf(
        stripe.refunds.create({ payment_intent: paid.id, amount: 500 }),
      );

      expect(tooMuch).toBeInstanceOf(StripeInvalidRequestError);
      expect(tooMuch).toMatchObject({ code: "amount_too_large", param: "amount" });
      expect(await sim.control.stats()).toMatchObject({ refunds: 1, amount_refunded: 600 });
    });

    it("rejects refunds of a declined or unknown PaymentIntent", async () => {
      const declined = await rejectionOf(
        stripe.paymentIntents.create(payment({ payment_method: "pm_card_chargeDeclined" })),
      );
      const declinedId = declined.payment_intent?.id ?? "";

      const ofDeclined = await rejectionOf(stripe.refunds.create({ payment_intent: declinedId }));
      expect(ofDeclined.code).toBe("payment_intent_unexpected_state");
      const ofUnknown = await rejectionOf(stripe.refunds.create({ payment_intent: "pi_nope" }));
      expect(ofUnknown).toMatchObject({ code: "resource_missing", param: "payment_intent" });
    });
  });

  describe("faults", () => {
    it("error_500: the SDK raises StripeAPIError and nothing is created", async () => {
      await sim.control.setFaults({ error_500: 1 });

      const error = await rejectionOf(stripe.paymentIntents.create(payment()));

      expect(error).toBeInstanceOf(StripeAPIError);
      expect(error.statusCode).toBe(500);
      expect(await sim.control.stats()).toMatchObject({ payment_intents: 0, charges: 0 });
      await expect(stripe.paymentIntents.create(payment())).resolves.toMatchObject({
        status: "succeeded",
      });
    });

    it("applies a fault only under its path_prefix", async () => {
      await sim.control.setFaults({ error_500: 1, path_prefix: "/v1/refunds" });

      const paid = await stripe.paymentIntents.create(payment());
      const error = await rejectionOf(stripe.refunds.create({ payment_intent: paid.id }));

      expect(error).toBeInstanceOf(StripeAPIError);
      expect(await sim.control.faults()).toEqual([]);
      expect(await sim.control.stats()).toMatchObject({ charges: 1, refunds: 0 });
    });

    it("lose_response once: stripe-node's automatic retry gets the replay", async () => {
      await sim.control.setFaults({ lose_response: 1 });

      const created = await stripe.paymentIntents.create(payment(), { idempotencyKey: "lost-1" });

      expect(created.lastResponse.headers["idempotent-replayed"]).toBe("true");
      const posts = await sim.control.requests({ idempotency_key: "lost-1" });
      expect(posts.map((entry) => entry.fault)).toEqual(["lose_response", null]);
      expect(await sim.control.stats()).toMatchObject({ charges: 1, idempotent_replays: 1 });
    });

    it("lose_response twice: connection error; the same key then returns the same PI", async () => {
      await sim.control.setFaults({ lose_response: 2 });
      const params = payment({ metadata: { order_id: "lost-order" } });

      const error = await rejectionOf(
        stripe.paymentIntents.create(params, { idempotencyKey: "lost-2" }),
      );
      expect(error).toBeInstanceOf(StripeConnectionError);
      const [charged] = await sim.control.paymentIntents({ metadata: { order_id: "lost-order" } });
      expect(charged?.status).toBe("succeeded");

      const retried = await stripe.paymentIntents.create(params, { idempotencyKey: "lost-2" });
      expect(retried.id).toBe(charged?.id);
      expect(await sim.control.stats()).toMatchObject({ payment_intents: 1, charges: 1 });
    });

    it("latency past the client timeout: the SDK times out, the charge still happens", async () => {
      await sim.control.setFaults({ latency_ms: 800 });
      const impatient = sim.stripe({ timeout: 200 });

      const error = await rejectionOf(impatient.paymentIntents.create(payment()));

      expect(error).toBeInstanceOf(StripeConnectionError);
      expect(error.message).toContain("timeout");
      await waitFor(async () => ((await sim.control.stats()).charges === 1 ? true : undefined));
    });
  });

  describe("webhooks", () => {
    let receiver: Awaited<ReturnType<typeof startReceiver>> | undefined;

    afterEach(async () => {
      await receiver?.close();
      receiver = undefined;
    });

    function verified(webhook: ReceivedWebhook): Stripe.Event {
      return stripe.webhooks.constructEvent(
        webhook.body,
        String(webhook.headers["stripe-signature"]),
        sim.webhookSecret,
      );
    }

    it("delivers signed succeeded, payment_failed and charge.refunded events", async () => {
      receiver = await startReceiver();
      const { received } = receiver;
      await sim.control.configureWebhooks({ url: receiver.url });

      const paid = await stripe.paymentIntents.create(payment(), { idempotencyKey: "wh-paid" });
      await rejectionOf(
        stripe.paymentIntents.create(payment({ payment_method: "pm_card_chargeDeclined" })),
      );
      const refund = await stripe.refunds.create({ payment_intent: paid.id, amount: 400 });
      await waitFor(async () => (received.length >= 3 ? true : undefined));

      const events = received.map(verified);
      expect(events.map((event) => event.type).sort()).toEqual([
        "charge.refunded",
        "payment_intent.payment_failed",
        "payment_intent.succeeded",
      ]);
      for (const event of events) {
        expect(event).toMatchObject({ object: "event", livemode: false, pending_webhooks: 1 });
        expect(event.id).toMatch(/^evt_/);
      }
      const succeeded = events.find((event) => event.type === "payment_intent.succeeded");
      expect(succeeded?.data.object).toMatchObject({ id: paid.id, status: "succeeded" });
      expect(succeeded?.request).toEqual({
        id: paid.lastResponse.requestId,
        idempotency_key: "wh-paid",
      });
      const refunded = events.find((event) => event.type === "charge.refunded");
      expect(refunded?.data.object).toMatchObject({
        id: paid.latest_charge,
        payment_intent: paid.id,
        amount_refunded: 400,
        refunded: false,
        refunds: { object: "list", data: [{ id: refund.id, amount: 400 }] },
      });
      expect(refunded?.data.previous_attributes).toEqual({ amount_refunded: 0, refunded: false });
      expect(() =>
        stripe.webhooks.constructEvent(
          received[0]?.body ?? "",
          String(received[0]?.headers["stripe-signature"]),
          "whsec_wrong",
        ),
      ).toThrow(Stripe.errors.StripeSignatureVerificationError);
      await waitFor(async () => {
        const stats = await sim.control.stats();
        return stats.webhook_deliveries_succeeded === 3 ? stats : undefined;
      });
    });

    it("delivers each event n times with duplicates, with the same event id", async () => {
      receiver = await startReceiver();
      const { received } = receiver;
      await sim.control.configureWebhooks({ url: receiver.url, duplicates: 3 });

      const paid = await stripe.paymentIntents.create(payment());
      await waitFor(async () => (received.length >= 3 ? true : undefined));

      const events = received.map(verified);
      expect(new Set(events.map((event) => event.id)).size).toBe(1);
      expect(events[0]?.data.object).toMatchObject({ id: paid.id });
      const [listed] = await sim.control.events({ object_id: paid.id });
      expect(listed?.deliveries).toHaveLength(3);
    });

    it("redelivers after the receiver answered 500, and resends on demand", async () => {
      receiver = await startReceiver((index) => (index === 1 ? 500 : 200));
      const { received } = receiver;
      await sim.control.configureWebhooks({ url: receiver.url });

      await stripe.paymentIntents.create(payment());
      await waitFor(async () => (received.length >= 2 ? true : undefined));

      const [first, second] = received.map(verified);
      expect(second?.id).toBe(first?.id);
      const [event] = await sim.control.events({ type: "payment_intent.succeeded" });
      expect(event?.deliveries).toEqual([
        expect.objectContaining({ status: "succeeded", attempts: 2, last_status_code: 200 }),
      ]);

      await sim.control.resendEvent(event?.id ?? "");
      await waitFor(async () => (received.length >= 3 ? true : undefined));
      expect(received[2] && verified(received[2]).id).toBe(event?.id);
    });

    it("records events without delivering them when no URL is configured", async () => {
      await stripe.paymentIntents.create(payment());

      const [event] = await sim.control.events();
      expect(event).toMatchObject({
        type: "payment_intent.succeeded",
        pending_webhooks: 0,
        deliveries: [],
      });
    });
  });
});

describe("stripe simulator process", () => {
  let stateDir: string;

  beforeEach(async () => {
    stateDir = await mkdtemp(join(tmpdir(), "stripe-sim-test-"));
  });

  afterEach(async () => {
    await rm(stateDir, { recursive: true, force: true });
  });

  it("keeps every object and idempotency key across kill -9 and a restart", async () => {
    const stateFile = join(stateDir, "nested", "state.json");
    const first = await startSimulator({ stateFile });
    const stripe = first.stripe();
    const paid = await stripe.paymentIntents.create(payment(), { idempotencyKey: "durable" });
    const refund = await stripe.refunds.create({ payment_intent: paid.id, amount: 250 });
    await first.kill();

    const second = await startSimulator({ stateFile, port: first.port });
    try {
      const sameClient = stripe;
      expect(await sameClient.paymentIntents.retrieve(paid.id)).toEqual(paid);
      expect(await sameClient.refunds.retrieve(refund.id)).toEqual(refund);
      const replay = await sameClient.paymentIntents.create(payment(), {
        idempotencyKey: "durable",
      });
      expect(replay.id).toBe(paid.id);
      expect(replay.lastResponse.headers["idempotent-replayed"]).toBe("true");
      expect(await second.control.stats()).toMatchObject({
        payment_intents: 1,
        charges: 1,
        refunds: 1,
        amount_refunded: 250,
      });
      expect(await second.stop()).toBe(0);
    } finally {
      await second.kill();
    }
  }, 30_000);

  it("resumes pending webhook deliveries after a restart", async () => {
    let receiverUp = false;
    const receiver = await startReceiver(() => (receiverUp ? 200 : 503));
    const stateFile = join(stateDir, "state.json");
    const env = { STRIPE_SIM_WEBHOOK_RETRY_BASE_MS: "200", STRIPE_SIM_WEBHOOK_RETRY_MAX_MS: "200" };
    try {
      const first = await startSimulator({ stateFile, webhookUrl: receiver.url, env });
      const paid = await first.stripe().paymentIntents.create(payment());
      await waitFor(async () => (receiver.received.length >= 1 ? true : undefined));
      await first.kill();

      receiverUp = true;
      const second = await startSimulator({ stateFile, webhookUrl: receiver.url, env });
      try {
        const [event] = await waitFor(async () => {
          const events = await second.control.events({ object_id: paid.id });
          return events[0]?.deliveries[0]?.status === "succeeded" ? events : undefined;
        });
        const last = receiver.received.at(-1);
        expect(
          last &&
            second
              .stripe()
              .webhooks.constructEvent(
                last.body,
                String(last.headers["stripe-signature"]),
                second.webhookSecret,
              ).id,
        ).toBe(event?.id);
      } finally {
        await second.stop();
      }
    } finally {
      await receiver.close();
    }
  }, 30_000);

  it("exits non-zero naming the variable when the environment is invalid", async () => {
    const failure = await rejectionOf<Error>(
      startSimulator({ stateFile: null, env: { STRIPE_SIM_PORT: "not-a-port" } }),
    );

    expect(failure.message).toContain("exited during startup (code 1)");
    expect(failure.message).toContain("STRIPE_SIM_PORT");
  }, 30_000);
});
