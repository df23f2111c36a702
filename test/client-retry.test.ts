import { once } from "node:events";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import {
  ApiConnectionError,
  ApiProblem,
  ApiResponseError,
  type ClientOptions,
  createClient,
  type RetryEvent,
} from "../client/src/index.js";
import { parseRetryAfter, retryDelayMs } from "../client/src/retry.js";

/**
 * The retry policy's timing and bounds, against a scripted HTTP server on a real socket: it
 * answers each request with the next scripted reply and records what arrived when. (The API
 * itself never answers 429 or 502 and cannot be made to answer 503 on demand; the suite
 * test/client.test.ts drives the real server through the cases it can produce.)
 */
type Reply =
  | { status: number; headers?: Record<string, string>; body?: unknown }
  /** Never answers: the request hangs until the client gives up on it. */
  | "hang";

interface Arrival {
  at: number;
  method: string;
  path: string;
  idempotencyKey: string | undefined;
}

let script: Reply[] = [];
let arrivals: Arrival[] = [];
const hanging = new Set<ServerResponse>();
let baseUrl: string;
const server = createServer((req: IncomingMessage, res: ServerResponse) => {
  arrivals.push({
    at: performance.now(),
    method: req.method ?? "",
    path: req.url ?? "",
    idempotencyKey: req.headers["idempotency-key"] as string | undefined,
  });
  req.resume();
  const reply = script.shift() ?? { status: 500, body: problem(500, "internal_error") };
  if (reply === "hang") {
    hanging.add(res);
    return;
  }
  const isProblem = reply.status >= 400 && typeof reply.body === "object";
  res.writeHead(reply.status, {
    "Content-Type": isProblem ? "application/problem+json" : "application/json",
    "X-Request-Id": `req-${arrivals.length}`,
    ...reply.headers,
  });
  res.end(typeof reply.body === "string" ? reply.body : JSON.stringify(reply.body ?? {}));
});

beforeAll(async () => {
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  server.closeAllConnections();
  server.close();
});
beforeEach(() => {
  script = [];
  arrivals = [];
  for (const res of hanging) res.destroy();
  hanging.clear();
});

function problem(status: number, code: string, extra: Record<string, unknown> = {}) {
  return {
    type: `tag:idempotent-payments.dev,2026:problems/${code}`,
    title: code,
    status,
    detail: `detail of ${code}`,
    code,
    request_id: "req-stub",
    ...extra,
  };
}

const ORDER = { currency: "EUR", items: [{ sku: "S", name: "N", quantity: 1, unit_amount: 100 }] };
const CREATED = { status: 201, body: { id: "ord_1", object: "order" } };

function stubClient(options: Partial<ClientOptions> = {}) {
  const retries: RetryEvent[] = [];
  const api = createClient({
    baseUrl,
    apiKey: "sk_stub",
    initialRetryDelayMs: 10,
    onRetry: (event) => retries.push(event),
    ...options,
  });
  return { api, retries };
}

const gaps = () => arrivals.slice(1).map((a, i) => a.at - (arrivals[i]?.at ?? 0));

describe("a write's idempotency key", () => {
  it("is a new UUID per call, the same on every retry of that call", async () => {
    const { api } = stubClient();
    script = [{ status: 503, body: problem(503, "service_unavailable") }, CREATED, CREATED];
    const first = await api.orders.create(ORDER);
    const second = await api.orders.create(ORDER);
    expect(first).toMatchObject({ attempts: 2, status: 201, replayed: false });
    expect(first.idempotencyKey).toMatch(
      /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/,
    );
    expect(arrivals.map((a) => a.idempotencyKey)).toEqual([
      first.idempotencyKey,
      first.idempotencyKey,
      second.idempotencyKey,
    ]);
    expect(second.idempotencyKey).not.toBe(first.idempotencyKey);
  });

  it("is the caller's when given, and reads send none", async () => {
    const { api } = stubClient();
    script = [{ status: 429, body: problem(429, "rate_limited") }, CREATED, { status: 200 }];
    const key = "caller-chosen-key-0001";
    expect((await api.orders.create(ORDER, { idempotencyKey: key })).idempotencyKey).toBe(key);
    await api.orders.list({ limit: 5, starting_after: "ord_x" });
    expect(arrivals.map((a) => [a.method, a.path, a.idempotencyKey])).toEqual([
      ["POST", "/v1/orders", key],
      ["POST", "/v1/orders", key],
      ["GET", "/v1/orders?limit=5&starting_after=ord_x", undefined],
    ]);
  });
});

describe("Retry-After", () => {
  it("is waited out: a 429 with Retry-After: 1 is retried no sooner than a second later", async () => {
    const { api, retries } = stubClient({ maxRetryDelayMs: 5000 });
    script = [{ status: 429, headers: { "Retry-After": "1" } }, CREATED];
    const result = await api.orders.create(ORDER);
    expect(result.attempts).toBe(2);
    expect(retries).toEqual([
      expect.objectContaining({ attempt: 1, reason: "rate_limited", status: 429, delayMs: 1000 }),
    ]);
    expect(gaps()[0]).toBeGreaterThanOrEqual(995);
    expect(gaps()[0]).toBeLessThan(1500);
  });

  it("is capped at maxRetryDelayMs", async () => {
    const { api, retries } = stubClient({ maxRetryDelayMs: 150 });
    script = [{ status: 503, headers: { "Retry-After": "3600" } }, CREATED];
    expect((await api.orders.create(ORDER)).attempts).toBe(2);
    expect(retries[0]?.delayMs).toBe(150);
    expect(gaps()[0]).toBeGreaterThanOrEqual(145);
    expect(gaps()[0]).toBeLessThan(1000);
  });

  it("is read as seconds or as an HTTP date; anything else is ignored", () => {
    const now = Date.parse("2026-12-03T12:00:00Z");
    expect(parseRetryAfter("2", now)).toBe(2000);
    expect(parseRetryAfter(" 0 ", now)).toBe(0);
    expect(parseRetryAfter("Thu, 03 Dec 2026 12:00:05 GMT", now)).toBe(5000);
    expect(parseRetryAfter("Thu, 03 Dec 2026 11:00:00 GMT", now)).toBe(0);
    expect(parseRetryAfter("soon", now)).toBeUndefined();
    expect(parseRetryAfter("-1", now)).toBeUndefined();
    expect(parseRetryAfter(null, now)).toBeUndefined();
  });
});

describe("backoff", () => {
  it("draws each wait uniformly below a doubling ceiling capped at maxRetryDelayMs", () => {
    const bounds = { initialRetryDelayMs: 100, maxRetryDelayMs: 1000 };
    const top = () => 0.999_999;
    expect([1, 2, 3, 4, 5, 6].map((retry) => retryDelayMs(retry, undefined, bounds, top))).toEqual([
      99, 199, 399, 799, 999, 999,
    ]);
    expect(retryDelayMs(3, undefined, bounds, () => 0)).toBe(0);
    expect(retryDelayMs(3, undefined, bounds, () => 0.5)).toBe(200);
    // Retry-After is a floor under the jittered wait, itself capped.
    expect(retryDelayMs(1, 700, bounds, () => 0)).toBe(700);
    expect(retryDelayMs(5, 10, bounds, () => 0.5)).toBe(500);
    expect(retryDelayMs(1, 60_000, bounds, () => 0)).toBe(1000);
  });

  it("stops after maxRetries and raises the last answer", async () => {
    const { api, retries } = stubClient({ maxRetries: 2 });
    script = Array(5).fill({ status: 503, body: problem(503, "service_unavailable") });
    const error = await api.orders.create(ORDER).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ApiProblem);
    expect(error).toMatchObject({ status: 503, code: "service_unavailable", attempts: 3 });
    expect(arrivals).toHaveLength(3);
    expect(new Set(arrivals.map((a) => a.idempotencyKey)).size).toBe(1);
    expect(retries.map((r) => r.attempt)).toEqual([1, 2]);
    expect(retries.every((r, i) => r.delayMs >= 0 && r.delayMs < 10 * 2 ** i)).toBe(true);
  });

  it("stops at maxElapsedMs: no wait or attempt runs past it", async () => {
    const { api } = stubClient({ maxRetries: 1000, initialRetryDelayMs: 80, maxElapsedMs: 600 });
    script = Array(1000).fill({ status: 503 });
    const started = performance.now();
    const error = await api.orders.create(ORDER).catch((e: unknown) => e);
    const elapsed = performance.now() - started;
    expect(error).toBeInstanceOf(ApiResponseError);
    expect(error).toMatchObject({ status: 503, attempts: arrivals.length });
    expect(arrivals.length).toBeGreaterThan(2);
    expect(elapsed).toBeLessThan(700);
  });

  it("does not wait for a Retry-After that ends past maxElapsedMs", async () => {
    const { api, retries } = stubClient({ maxElapsedMs: 500 });
    script = [{ status: 409, headers: { "Retry-After": "1" }, body: inProgress() }, CREATED];
    const error = await api.orders.create(ORDER).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: "idempotency_key_in_progress", attempts: 1 });
    expect(retries).toEqual([]);
    expect(arrivals).toHaveLength(1);
  });
});

function inProgress() {
  return problem(409, "idempotency_key_in_progress");
}

describe("a call without an answer", () => {
  it("retries an attempt that outlives timeoutMs, with the same key", async () => {
    const { api, retries } = stubClient({ timeoutMs: 200 });
    script = ["hang", CREATED];
    const result = await api.orders.create(ORDER);
    expect(result).toMatchObject({ attempts: 2, data: { id: "ord_1" } });
    expect(retries[0]).toMatchObject({ reason: "timeout", attempt: 1 });
    expect(retries[0]).not.toHaveProperty("status");
    expect(gaps()[0]).toBeGreaterThanOrEqual(195);
    expect(arrivals[0]?.idempotencyKey).toBe(result.idempotencyKey);
    expect(arrivals[1]?.idempotencyKey).toBe(result.idempotencyKey);
  });

  it("raises ApiConnectionError, timedOut, when every attempt outlives timeoutMs", async () => {
    const { api } = stubClient({ timeoutMs: 100, maxRetries: 1 });
    script = ["hang", "hang"];
    const error = await api.orders.get("ord_1").catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ApiConnectionError);
    expect(error).toMatchObject({ timedOut: true, attempts: 2, idempotencyKey: undefined });
    expect((error as Error).message).toBe(
      "GET /v1/orders/ord_1: no answer within 100 ms, after 2 attempts",
    );
    expect(arrivals).toHaveLength(2);
  });

  it("cuts the last attempt short at maxElapsedMs", async () => {
    const { api } = stubClient({ timeoutMs: 10_000, maxElapsedMs: 300 });
    script = ["hang"];
    const started = performance.now();
    const error = await api.orders.create(ORDER).catch((e: unknown) => e);
    expect(performance.now() - started).toBeLessThan(600);
    expect(error).toMatchObject({ timedOut: true, attempts: 1 });
    expect(arrivals).toHaveLength(1);
  });

  it("raises ApiConnectionError with the key when a refused connection stays refused", async () => {
    const closed = createServer();
    closed.listen(0, "127.0.0.1");
    await once(closed, "listening");
    const port = (closed.address() as AddressInfo).port;
    closed.close();
    const { api, retries } = stubClient({ baseUrl: `http://127.0.0.1:${port}`, maxRetries: 2 });
    const key = "connection-refused-key-1";
    const error = await api.payments
      .create({ order_id: "ord_1", payment_method: "pm_card_visa" }, { idempotencyKey: key })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ApiConnectionError);
    expect(error).toMatchObject({ timedOut: false, attempts: 3, idempotencyKey: key });
    expect((error as Error).message).toMatch(/ECONNREFUSED/);
    expect(retries.map((r) => r.reason)).toEqual(["network", "network"]);
  });

  it("retries a gateway's 502 and 504, whose bodies are not problems", async () => {
    const { api, retries } = stubClient();
    script = [
      { status: 502, body: "<html>Bad Gateway</html>" },
      { status: 504, body: "<html>Gateway Timeout</html>" },
      CREATED,
    ];
    expect((await api.orders.create(ORDER)).attempts).toBe(3);
    expect(retries.map((r) => [r.reason, r.status])).toEqual([
      ["gateway", 502],
      ["gateway", 504],
    ]);
  });
});

describe("an AbortSignal", () => {
  it("stops the call mid-wait, at once", async () => {
    const { api } = stubClient({ maxRetryDelayMs: 30_000 });
    script = [{ status: 503, headers: { "Retry-After": "20" } }, CREATED];
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 100);
    const started = performance.now();
    const error = await api.orders
      .create(ORDER, { signal: controller.signal })
      .catch((e: unknown) => e);
    expect(performance.now() - started).toBeLessThan(600);
    expect(error).toBeInstanceOf(DOMException);
    expect((error as DOMException).name).toBe("AbortError");
    expect(arrivals).toHaveLength(1);
  });

  it("stops an attempt in flight, and is not retried", async () => {
    const { api, retries } = stubClient();
    script = ["hang", CREATED];
    const reason = new Error("user went away");
    const controller = new AbortController();
    setTimeout(() => controller.abort(reason), 100);
    await expect(api.orders.get("ord_1", { signal: controller.signal })).rejects.toBe(reason);
    expect(arrivals).toHaveLength(1);
    expect(retries).toEqual([]);
  });
});

describe.each([
  [400, "validation_failed"],
  [401, "api_key_invalid"],
  [402, "payment_declined"],
  [404, "order_not_found"],
  [409, "order_not_cancellable"],
  [413, "payload_too_large"],
  [422, "idempotency_key_reused"],
  [500, "internal_error"],
])("a %i %s", (status, code) => {
  it("is raised after exactly one request", async () => {
    const { api, retries } = stubClient();
    script = [{ status, body: problem(status, code), headers: { "Retry-After": "0" } }, CREATED];
    const error = await api.orders.cancel("ord_1").catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ApiProblem);
    expect(error).toMatchObject({
      status,
      code,
      detail: `detail of ${code}`,
      requestId: "req-stub",
      body: problem(status, code),
      attempts: 1,
    });
    expect(arrivals).toHaveLength(1);
    expect(retries).toEqual([]);
  });
});
