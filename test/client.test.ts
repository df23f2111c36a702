import { once } from "node:events";
import { type AddressInfo, connect, createServer, type Server, type Socket } from "node:net";
import { sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, expectTypeOf, inject, it } from "vitest";
import {
  ApiProblem,
  type ClientOptions,
  createClient,
  isApiProblem,
  type ProblemCode,
  type ProblemCodeOf,
  type RetryEvent,
} from "../client/src/index.js";
import type { ErrorCode } from "../src/http/errors.js";
import type { READ_ERRORS, WRITE_ERRORS } from "../src/http/openapi.js";
import {
  createTestTenant,
  expectDocumented,
  expectedProblem,
  holdTenantRow,
  tenantRows,
  useDatabase,
} from "./helpers/harness.js";
import { eventually, PAYABLE_ORDER, paymentRows } from "./helpers/payments.js";
import { type ServerProcess, startServer } from "./helpers/server-process.js";
import { type SimulatorProcess, startSimulator } from "./helpers/simulator-process.js";

/**
 * The client package against the real server process (and the Stripe simulator behind it):
 * the failures its retries exist for, produced for real, and the database afterwards.
 */
const { db } = useDatabase();
let sim: SimulatorProcess;
let server: ServerProcess;

/** A short wait for a key in progress, so its 409 comes quickly. */
const serverEnv = () => ({
  DATABASE_URL: inject("databaseUrl"),
  STRIPE_API_URL: sim.url,
  // One provider call per attempt: a lost provider response becomes our 503 at once.
  PROVIDER_MAX_NETWORK_RETRIES: "0",
  PROVIDER_TIMEOUT_MS: "2000",
  IDEMPOTENCY_WAIT_MS: "300",
  COMPLETER_INTERVAL_MS: "0",
});

beforeAll(async () => {
  sim = await startSimulator();
  server = await startServer(serverEnv());
});
afterAll(async () => {
  await server?.kill("SIGTERM");
  await sim?.stop();
});

/**
 * A client of a new tenant whose every HTTP answer is checked against openapi.yaml and
 * counted, with quick backoff so the suite stays fast.
 */
async function tenantClient(options: Partial<ClientOptions> = {}) {
  const { tenant, apiKey } = await createTestTenant(db, "client");
  const requests: string[] = [];
  const retries: RetryEvent[] = [];
  const api = createClient({
    baseUrl: server.url,
    apiKey,
    initialRetryDelayMs: 50,
    onRetry: (event) => retries.push(event),
    async fetch(input, init) {
      const url = new URL(String(input));
      const method = init?.method ?? "GET";
      requests.push(`${method} ${url.pathname}`);
      const response = await fetch(input, init);
      await expectDocumented(method, `${url.pathname}${url.search}`, response);
      return response;
    },
    ...options,
  });
  return { tenant, apiKey, api, requests, retries };
}

const ORDER = {
  currency: "EUR",
  items: [{ sku: "SKU-LAMP", name: "Lamp", quantity: 2, unit_amount: 1750 }],
  customer_email: "ada@example.com",
};

const chargesFor = (orderId: string) => sim.control.charges({ metadata: { order_id: orderId } });

describe("the client on the real server", () => {
  it("runs the whole flow, each write once, each answer first-hand", async () => {
    const { tenant, api, requests } = await tenantClient();
    const created = await api.orders.create(ORDER);
    expect(created).toMatchObject({
      status: 201,
      replayed: false,
      attempts: 1,
      data: { object: "order", status: "pending", amount_total: 3500 },
    });
    expect(created.requestId).not.toBe("");
    const order = created.data;
    expect((await api.orders.get(order.id)).data).toEqual(order);

    const paid = await api.payments.create({ order_id: order.id, payment_method: "pm_card_visa" });
    expect(paid).toMatchObject({ status: 201, replayed: false, data: { status: "succeeded" } });
    const refund = await api.refunds.create({ payment_id: paid.data.id, amount: 1000 });
    expect(refund.data).toMatchObject({ amount: 1000, status: "succeeded" });
    expect((await api.payments.get(paid.data.id)).data.id).toBe(paid.data.id);
    expect((await api.refunds.get(refund.data.id)).data).toEqual(refund.data);

    const other = (await api.orders.create(ORDER)).data;
    const cancelled = await api.orders.cancel(other.id);
    expect(cancelled.data.status).toBe("cancelled");
    const page = await api.orders.list({ limit: 1 });
    expect(page.data).toMatchObject({ object: "list", has_more: true });
    expect(page.data.data.map((o) => o.id)).toEqual([other.id]);
    const next = await api.orders.list({ limit: 1, starting_after: other.id });
    expect(next.data.data.map((o) => o.id)).toEqual([order.id]);
    expect((await api.orders.get(order.id)).data.status).toBe("partially_refunded");

    const writes = [created, paid, refund, cancelled];
    expect(new Set(writes.map((w) => w.idempotencyKey)).size).toBe(4);
    // Eleven calls, eleven requests: nothing was retried.
    expect(requests).toHaveLength(11);
    expect(await tenantRows(db, tenant.id)).toEqual({ orders: 2, items: 2, keys: 5 });
    expect(await paymentRows(db, tenant.id)).toMatchObject({ payments: 1, refunds: 1 });
    expect(await chargesFor(order.id)).toHaveLength(1);
  });
});

/**
 * A TCP proxy in front of the server. Armed with `drop`, it closes the client's connection as
 * soon as the server's answer starts to arrive: the server has committed, the client never
 * hears of it. Armed with `hold`, it keeps that answer back and tells the test, which can then
 * kill the server; `retarget` points it at a restarted one.
 */
async function proxyTo(initialUpstream: string) {
  let upstream = new URL(initialUpstream);
  let drops = 0;
  let holds = 0;
  let onHeld: () => void = () => {};
  const answersStarted: string[] = [];
  const sockets = new Set<Socket>();
  const proxy: Server = createServer((client) => {
    const server = connect(Number(upstream.port), upstream.hostname);
    for (const socket of [client, server]) {
      sockets.add(socket);
      socket.on("error", () => {});
      socket.on("close", () => {
        sockets.delete(socket);
        client.destroy();
        server.destroy();
      });
    }
    // A new request from the client means the next bytes from the server start a new answer.
    let answering = false;
    let held = false;
    client.on("data", (chunk) => {
      answering = false;
      server.write(chunk);
    });
    server.on("data", (chunk) => {
      if (held) return;
      if (!answering) {
        answering = true;
        answersStarted.push(chunk.toString("latin1").split("\r\n")[0] ?? "");
        if (drops > 0) {
          drops--;
          client.destroy();
          return;
        }
        if (holds > 0) {
          holds--;
          held = true;
          onHeld();
          return;
        }
      }
      client.write(chunk);
    });
  });
  proxy.listen(0, "127.0.0.1");
  await once(proxy, "listening");
  return {
    url: `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`,
    /** The status line of every answer that started to come back from the server. */
    answersStarted,
    drop(n: number) {
      drops = n;
    },
    /** Resolves once an answer is held. */
    hold(): Promise<void> {
      holds = 1;
      return new Promise((resolve) => {
        onHeld = resolve;
      });
    },
    retarget(url: string) {
      upstream = new URL(url);
    },
    async close() {
      for (const socket of sockets) socket.destroy();
      proxy.close();
    },
  };
}

describe("a response lost after the server committed", () => {
  it("(the connection dropped by a proxy) is recovered by the retry's replay: one order", async () => {
    const proxy = await proxyTo(server.url);
    try {
      const { tenant, api, retries } = await tenantClient({ baseUrl: proxy.url });
      proxy.drop(1);
      const created = await api.orders.create(ORDER);
      expect(created).toMatchObject({ status: 201, replayed: true, attempts: 2 });
      expect(retries).toEqual([
        expect.objectContaining({
          reason: "network",
          attempt: 1,
          idempotencyKey: created.idempotencyKey,
        }),
      ]);
      expect(proxy.answersStarted).toEqual(["HTTP/1.1 201 Created", "HTTP/1.1 201 Created"]);
      expect(await tenantRows(db, tenant.id)).toEqual({ orders: 1, items: 1, keys: 1 });
      const [row] = await db.execute<{ id: string }>(
        sql`SELECT id FROM orders WHERE tenant_id = ${tenant.id}`,
      );
      expect(row?.id).toBe(created.data.id);
    } finally {
      await proxy.close();
    }
  });

  it("(the server SIGKILLed, then restarted) is recovered by the retry's replay: one order", async () => {
    const doomed = await startServer(serverEnv());
    const proxy = await proxyTo(doomed.url);
    let restarted: ServerProcess | undefined;
    try {
      const { tenant, api, retries } = await tenantClient({
        baseUrl: proxy.url,
        maxRetries: 100,
        maxRetryDelayMs: 300,
        maxElapsedMs: 25_000,
      });
      const held = proxy.hold();
      const call = api.orders.create(ORDER);
      await held;
      // The answer exists, so its transaction committed; the process dies before sending it.
      expect(await tenantRows(db, tenant.id)).toEqual({ orders: 1, items: 1, keys: 1 });
      expect(await doomed.kill("SIGKILL")).toBeNull();
      restarted = await startServer(serverEnv());
      proxy.retarget(restarted.url);

      const created = await call;
      expect(created).toMatchObject({ status: 201, replayed: true });
      expect(created.attempts).toBeGreaterThanOrEqual(2);
      expect(retries.every((r) => r.reason === "network")).toBe(true);
      expect(new Set(retries.map((r) => r.idempotencyKey))).toEqual(
        new Set([created.idempotencyKey]),
      );
      expect(await tenantRows(db, tenant.id)).toEqual({ orders: 1, items: 1, keys: 1 });
    } finally {
      await proxy.close();
      await doomed.kill("SIGKILL");
      await restarted?.kill("SIGTERM");
    }
  });
});

describe("a duplicate still in progress", () => {
  it("is waited out through the server's 409s and returns the replay", async () => {
    const { tenant, api, retries } = await tenantClient();
    const hold = await holdTenantRow(db, tenant.id);
    const key = `client-in-progress-${tenant.id}`;
    // The first request claims the key, then blocks inside its transaction on the held row.
    const first = api.orders.create(ORDER, { idempotencyKey: key });
    await hold.blocked(1);
    const duplicate = api.orders.create(ORDER, { idempotencyKey: key });
    await eventually(
      async () => retries.length,
      (n) => n >= 1,
    );
    await hold.release();

    const [original, replay] = await Promise.all([first, duplicate]);
    expect(original).toMatchObject({ replayed: false, attempts: 1 });
    expect(replay).toMatchObject({ replayed: true, idempotencyKey: key });
    expect(replay.data).toEqual(original.data);
    expect(replay.attempts).toBe(retries.length + 1);
    for (const retry of retries) {
      expect(retry).toMatchObject({ reason: "in_progress", status: 409, idempotencyKey: key });
      // The server's Retry-After: 1 is a floor under every wait.
      expect(retry.delayMs).toBeGreaterThanOrEqual(1000);
    }
    expect(await tenantRows(db, tenant.id)).toEqual({ orders: 1, items: 1, keys: 1 });
  });
});

describe("the provider's lost response", () => {
  it("is a 503 the client retries after Retry-After; one charge at the simulator", async () => {
    const { tenant, api, retries, requests } = await tenantClient();
    const order = (await api.orders.create(PAYABLE_ORDER)).data;
    // The Stripe SDK retries a reset connection once by itself: lose both answers.
    await sim.control.setFaults({ lose_response: 2, path_prefix: "/v1/payment_intents" });
    const paid = await api.payments.create({ order_id: order.id, payment_method: "pm_card_visa" });
    expect(paid).toMatchObject({ status: 201, attempts: 2, data: { status: "succeeded" } });
    expect(retries).toEqual([
      expect.objectContaining({
        reason: "unavailable",
        status: 503,
        delayMs: 2000,
        idempotencyKey: paid.idempotencyKey,
      }),
    ]);
    expect(requests.filter((r) => r === "POST /v1/payments")).toHaveLength(2);
    const charges = await chargesFor(order.id);
    expect(charges).toHaveLength(1);
    expect(paid.data.provider_reference).toBe(charges[0]?.payment_intent);
    const posts = await sim.control.requests({
      method: "POST",
      path_prefix: "/v1/payment_intents",
    });
    // All three provider calls carried the key the server derived from ours; the last got the
    // simulator's replay of the charge the lost ones made.
    const providerKey = posts.at(-1)?.idempotency_key;
    expect(
      posts
        .filter((p) => p.idempotency_key === providerKey)
        .map((p) => [p.fault, p.idempotent_replayed]),
    ).toEqual([
      ["lose_response", false],
      ["lose_response", true],
      [null, true],
    ]);
    expect(await paymentRows(db, tenant.id)).toMatchObject({ payments: 1, keys: 2 });
  });
});

describe("a final answer", () => {
  it("422 idempotency_key_reused is raised after exactly one request", async () => {
    const { tenant, api, requests } = await tenantClient();
    const key = `client-reused-${tenant.id}`;
    await api.orders.create(ORDER, { idempotencyKey: key });
    requests.length = 0;
    const error = await api.orders
      .create({ ...ORDER, currency: "USD" }, { idempotencyKey: key })
      .catch((e: unknown) => e);
    expect(requests).toEqual(["POST /v1/orders"]);
    expect(error).toBeInstanceOf(ApiProblem);
    expect(error).toMatchObject({
      status: 422,
      code: "idempotency_key_reused",
      attempts: 1,
      idempotencyKey: key,
      body: expectedProblem("idempotency_key_reused"),
    });
    const problem = error as ApiProblem;
    expect(problem.requestId).toBe(problem.body.request_id);
    expect(await tenantRows(db, tenant.id)).toEqual({ orders: 1, items: 1, keys: 1 });
  });

  it("400 validation_failed is raised after exactly one request, with its field errors", async () => {
    const { tenant, api, requests } = await tenantClient();
    const error = await api.orders
      .create({ ...ORDER, items: [{ sku: "S", name: "N", quantity: 0, unit_amount: 1 }] })
      .catch((e: unknown) => e);
    expect(requests).toEqual(["POST /v1/orders"]);
    expect(isApiProblem(error, "validation_failed")).toBe(true);
    if (!isApiProblem(error, "validation_failed")) return;
    expectTypeOf(error.code).toEqualTypeOf<"validation_failed">();
    expect(error).toMatchObject({ status: 400, attempts: 1 });
    expect(error.body.errors).toEqual([
      { path: "json.items.0.quantity", message: expect.any(String) },
    ]);
    expect(await tenantRows(db, tenant.id)).toEqual({ orders: 0, items: 0, keys: 0 });
  });

  it("402 payment_declined is raised after exactly one request, with its decline code", async () => {
    const { tenant, api, requests } = await tenantClient();
    const order = (await api.orders.create(PAYABLE_ORDER)).data;
    requests.length = 0;
    const error = await api.payments
      .create({ order_id: order.id, payment_method: "pm_card_chargeDeclinedInsufficientFunds" })
      .catch((e: unknown) => e);
    expect(requests).toEqual(["POST /v1/payments"]);
    if (!isApiProblem(error, "payment_declined", "payment_method_invalid")) {
      throw new Error(`expected a decline, got ${String(error)}`);
    }
    expectTypeOf(error.code).toEqualTypeOf<"payment_declined" | "payment_method_invalid">();
    expect(error).toMatchObject({ status: 402, code: "payment_declined", attempts: 1 });
    expect(error.body).toEqual(
      expectedProblem("payment_declined", {
        detail: expect.any(String),
        payment_id: expect.stringMatching(/^pay_/),
        decline_code: "insufficient_funds",
      }),
    );
    // A decline is a stored outcome: one failed payment, the order still payable.
    expect(await paymentRows(db, tenant.id)).toMatchObject({ payments: 1, keys: 2 });
    expect((await api.payments.get(error.body.payment_id ?? "")).data.status).toBe("failed");
    expect((await api.orders.get(order.id)).data.status).toBe("pending");
  });

  it("has a code typed by openapi.yaml: the server's codes, per operation", () => {
    expectTypeOf<ProblemCode>().toEqualTypeOf<ErrorCode>();
    expectTypeOf<ProblemCodeOf<"getOrder">>().toEqualTypeOf<
      (typeof READ_ERRORS)[number] | "order_not_found"
    >();
    expectTypeOf<ProblemCodeOf<"createOrder">>().toEqualTypeOf<(typeof WRITE_ERRORS)[number]>();
    expectTypeOf<"payment_declined">().toExtend<ProblemCodeOf<"createPayment">>();
    expectTypeOf<"payment_declined">().not.toExtend<ProblemCodeOf<"createRefund">>();
  });
});
