import { sql } from "drizzle-orm";
import fc from "fast-check";
import Stripe from "stripe";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ERROR_CODES, ERRORS, type ErrorCode } from "../src/http/errors.js";
import { createLogger } from "../src/logger.js";
import { createMetrics } from "../src/metrics.js";
import {
  createTestTenant,
  expectDocumented,
  newKey,
  TEST_PROVIDER,
  testApp,
  useDatabase,
} from "./helpers/harness.js";
import { type SimulatorProcess, startSimulator } from "./helpers/simulator-process.js";

/**
 * Property-based fuzzing of the whole HTTP surface, in process: random methods, paths, keys,
 * content types, encodings, headers and bodies (U+0000, lone surrogates, bytes that are not
 * UTF-8, huge and deeply nested values), and well-signed webhooks with fuzzed events. Whatever
 * arrives: no 5xx, every error a problem+json with a code of ours and the status that code
 * has, every answer of a documented operation as openapi.yaml describes it, nothing stored for
 * a rejected request, and a healthy server afterwards.
 */
const { db } = useDatabase();
const output: string[] = [];
const logger = createLogger("info", { write: (line: string) => void output.push(line) });
const metrics = createMetrics();
let sim: SimulatorProcess;
let app: { request: (path: string, init?: RequestInit) => Response | Promise<Response> };
let tenantId: string;
let apiKey: string;
/** Real ids of this tenant's objects, so fuzzed requests also reach existing records. */
const ids = { orders: [] as string[], payments: [] as string[], refunds: [] as string[] };
/** The seeded payments and refunds as recorded, for webhook events that look genuine. */
let recorded: {
  payments: { id: string; orderId: string; amount: number; intentId: string }[];
  refunds: { id: string; paymentId: string; providerRefundId: string | null }[];
};

const RUNS = Number(process.env.FUZZ_RUNS ?? 5000);
const WEBHOOK_RUNS = Number(process.env.FUZZ_WEBHOOK_RUNS ?? 1500);
const seen = {
  requests: 0,
  byStatus: new Map<number, number>(),
  byRoute: new Map<string, number>(),
  webhookResults: new Map<string, number>(),
};

beforeAll(async () => {
  // A simulator that delivers no webhooks: the fuzzed requests alone move this tenant's rows.
  sim = await startSimulator();
  app = testApp(db, {}, { logger, metrics, providerUrl: sim.url });
  const created = await createTestTenant(db, "fuzz");
  tenantId = created.tenant.id;
  apiKey = created.apiKey;
  for (let i = 0; i < 3; i++) {
    const order = await send("POST", "/v1/orders", {
      headers: json({ "Idempotency-Key": newKey() }),
      body: JSON.stringify({
        currency: "EUR",
        items: [{ sku: `S${i}`, name: "Lamp", quantity: 1, unit_amount: 1000 + i }],
      }),
    });
    const orderId = ((await order.json()) as { id: string }).id;
    ids.orders.push(orderId);
    if (i === 2) continue;
    const payment = await send("POST", "/v1/payments", {
      headers: json({ "Idempotency-Key": newKey() }),
      body: JSON.stringify({ order_id: orderId, payment_method: "pm_card_visa" }),
    });
    const paymentId = ((await payment.json()) as { id: string }).id;
    ids.payments.push(paymentId);
    const refund = await send("POST", "/v1/refunds", {
      headers: json({ "Idempotency-Key": newKey() }),
      body: JSON.stringify({ payment_id: paymentId, amount: 100 }),
    });
    ids.refunds.push(((await refund.json()) as { id: string }).id);
  }
  const payments = await db.execute<{
    id: string;
    orderId: string;
    amount: number;
    intentId: string;
  }>(sql`
    SELECT id, order_id AS "orderId", amount::int AS amount, provider_payment_intent_id AS "intentId"
    FROM payments WHERE tenant_id = ${tenantId}`);
  const refunds = await db.execute<{
    id: string;
    paymentId: string;
    providerRefundId: string | null;
  }>(sql`
    SELECT id, payment_id AS "paymentId", provider_refund_id AS "providerRefundId"
    FROM refunds WHERE tenant_id = ${tenantId}`);
  recorded = { payments: [...payments], refunds: [...refunds] };
}, 60_000);

afterAll(async () => {
  await sim?.stop();
  const statuses = [...seen.byStatus].sort(([a], [b]) => a - b);
  process.stderr.write(
    `[fuzz] ${seen.requests} requests over ${seen.byRoute.size} routes; statuses: ` +
      `${statuses.map(([status, n]) => `${status}×${n}`).join(" ")}\n` +
      `[fuzz] signed webhooks: ${[...seen.webhookResults].map(([r, n]) => `${r}×${n}`).join(" ")}\n` +
      `[fuzz] by route: ${[...seen.byRoute].map(([route, n]) => `${route} ${n}`).join(", ")}\n`,
  );
});

function json(headers: Record<string, string>): Record<string, string> {
  return { Authorization: `Bearer ${apiKey}`, "Content-Type": "application/json", ...headers };
}

function send(
  method: string,
  path: string,
  init: { headers?: Record<string, string>; body?: string | Uint8Array } = {},
) {
  const headers = { ...init.headers };
  // Over the wire a body always comes with its length (or chunked framing); so here.
  if (init.body !== undefined) {
    headers["Content-Length"] = String(
      typeof init.body === "string" ? Buffer.byteLength(init.body) : init.body.byteLength,
    );
  }
  return app.request(path, { method, headers, body: init.body });
}

async function rowCounts() {
  const [row] = await db.execute<Record<string, number>>(sql`
    SELECT
      (SELECT count(*)::int FROM orders WHERE tenant_id = ${tenantId}) AS orders,
      (SELECT count(*)::int FROM order_items WHERE tenant_id = ${tenantId}) AS items,
      (SELECT count(*)::int FROM idempotency_keys WHERE tenant_id = ${tenantId}) AS keys,
      (SELECT count(*)::int FROM payments WHERE tenant_id = ${tenantId}) AS payments,
      (SELECT count(*)::int FROM refunds WHERE tenant_id = ${tenantId}) AS refunds,
      (SELECT count(*)::int FROM webhook_events WHERE tenant_id = ${tenantId}) AS events`);
  return row;
}

/** Statuses that reject a request: the idempotency layer stores none of them. */
const REJECTIONS = new Set([400, 401, 405, 413, 415, 422]);

/** The route template a path falls under, for the tally. */
function routeOf(method: string, path: string): string {
  const p = path.split("?")[0] ?? "";
  const template = p
    .replace(/^\/v1\/(orders|payments|refunds)\/[^/]+\/cancel$/, "/v1/$1/{id}/cancel")
    .replace(/^\/v1\/(orders|payments|refunds)\/[^/]+$/, "/v1/$1/{id}");
  return `${method} ${KNOWN_TEMPLATES.has(template) ? template : "(other path)"}`;
}

const KNOWN_TEMPLATES = new Set([
  "/v1/orders",
  "/v1/orders/{id}",
  "/v1/orders/{id}/cancel",
  "/v1/payments",
  "/v1/payments/{id}",
  "/v1/refunds",
  "/v1/refunds/{id}",
  "/v1/webhooks/stripe",
  "/healthz",
  "/readyz",
  "/metrics",
  "/openapi.json",
  "/docs",
]);

/** Which method and template pairs openapi.yaml documents: their answers are validated. */
const DOCUMENTED = new Set([
  "GET /v1/orders",
  "POST /v1/orders",
  "GET /v1/orders/{id}",
  "POST /v1/orders/{id}/cancel",
  "POST /v1/payments",
  "GET /v1/payments/{id}",
  "POST /v1/refunds",
  "GET /v1/refunds/{id}",
  "POST /v1/webhooks/stripe",
]);

/** Checks one answer against every invariant; returns it for the caller's own checks. */
async function check(method: string, sentPath: string, res: Response) {
  // What the server routed: a URL parser resolves dot segments (`/v1/orders/./cancel` is
  // `/v1/orders/cancel`) before any route sees the path.
  const path = new URL(sentPath, "http://localhost").pathname;
  seen.requests++;
  seen.byStatus.set(res.status, (seen.byStatus.get(res.status) ?? 0) + 1);
  const route = routeOf(method, path);
  seen.byRoute.set(route, (seen.byRoute.get(route) ?? 0) + 1);
  const text = method === "HEAD" ? "" : await res.clone().text();
  expect(res.status, `${method} ${path} -> ${res.status} ${text.slice(0, 300)}`).toBeLessThan(500);
  if (res.status >= 400 && method !== "HEAD") {
    expect(res.headers.get("content-type")).toBe("application/problem+json");
    const problem = JSON.parse(text) as { code: ErrorCode; status: number; request_id: string };
    expect(ERROR_CODES).toContain(problem.code);
    expect(problem.status).toBe(res.status);
    expect(ERRORS[problem.code].status).toBe(res.status);
    expect(problem.request_id).toBe(res.headers.get("x-request-id"));
  }
  const template = route.slice(method.length + 1);
  if (DOCUMENTED.has(`${method} ${template}`) && res.status !== 405) {
    await expectDocumented(method, path, res.clone());
  }
}

/** Percent-encodes any string; a lone surrogate goes as U+FFFD, as a client's encoder sends it. */
function encode(text: string): string {
  return encodeURIComponent(Buffer.from(text).toString());
}

// Strings a database or a parser may choke on, mixed with ordinary ones.
const nasty = fc.oneof(
  fc.string({ maxLength: 20 }),
  fc.string({ unit: "binary", maxLength: 20 }),
  fc.constantFrom(
    "\u0000",
    "a\u0000b",
    "\ud800",
    "x\udc00y",
    "\u{1F455}",
    "%00",
    "../..",
    "'; DROP TABLE orders; --",
    "9".repeat(400),
    "1e400",
    "-0",
    "ord_01jdq3v6x6m7e9z5k2c8r4t1ya",
    "",
  ),
);

const ids$ = () =>
  fc.oneof(
    fc.constantFrom(...ids.orders, ...ids.payments, ...ids.refunds),
    nasty.map((s) => encode(s)),
    fc.constantFrom(
      "ord_01jdq3v6x6m7e9z5k2c8r4t1ya",
      "pay_00000000000000000000000000",
      "x",
      "%ED%A0%80",
      "%FF",
      "%00",
    ),
  );

const path$ = () =>
  fc.oneof(
    {
      weight: 6,
      arbitrary: fc.constantFrom("/v1/orders", "/v1/payments", "/v1/refunds", "/v1/orders"),
    },
    { weight: 2, arbitrary: fc.constantFrom(...KNOWN_TEMPLATES).filter((p) => !p.includes("{")) },
    {
      weight: 3,
      arbitrary: fc
        .tuple(fc.constantFrom("orders", "payments", "refunds"), ids$())
        .map(([resource, id]) => `/v1/${resource}/${id}`),
    },
    { weight: 2, arbitrary: ids$().map((id) => `/v1/orders/${id}/cancel`) },
    {
      weight: 1,
      arbitrary: fc
        .tuple(nasty, nasty)
        .map(
          ([limit, after]) => `/v1/orders?limit=${encode(limit)}&starting_after=${encode(after)}`,
        ),
    },
    { weight: 1, arbitrary: nasty.map((s) => `/${encode(s)}`) },
    {
      weight: 1,
      arbitrary: fc.constantFrom("/v1", "/v1/", "/v1/orders/", "/v1/webhooks", "/V1/ORDERS"),
    },
  );

// Header values a client can put on the wire: visible ASCII and spaces.
const headerText = fc.string({
  unit: fc.integer({ min: 0x20, max: 0x7e }).map(String.fromCharCode),
  maxLength: 40,
});

const deep = fc
  .integer({ min: 30, max: 20_000 })
  .chain((depth) =>
    fc.constantFrom(
      `${"[".repeat(depth)}${"]".repeat(depth)}`,
      `{"currency":"EUR","items":${"[".repeat(depth)}${"]".repeat(depth)}}`,
      `${'{"a":'.repeat(depth)}1${"}".repeat(depth)}`,
    ),
  );

const invalidUtf8 = fc
  .tuple(
    fc.string({ maxLength: 30 }),
    fc.constantFrom(
      [0xff],
      [0xc3],
      [0xed, 0xa0, 0x80],
      [0xe2, 0x82],
      [0xc0, 0xaf],
      [0xf8, 0x88, 0x80, 0x80, 0x80],
    ),
  )
  .map(([prefix, bad]) => {
    const head = Buffer.from(`{"currency":"EUR","note":"${prefix}`);
    return new Uint8Array(Buffer.concat([head, Buffer.from(bad), Buffer.from('"}')]));
  });

const orderLike = () =>
  fc.record(
    {
      currency: fc.oneof(fc.constantFrom("EUR", "USD", "JPY", "eur", "XXX"), nasty),
      items: fc.oneof(
        fc.array(
          fc.record(
            {
              sku: nasty,
              name: nasty,
              quantity: fc.oneof(fc.integer(), fc.double(), nasty),
              unit_amount: fc.oneof(
                fc.integer({ min: 0, max: 10_000 }),
                fc.constantFrom(Number.MAX_SAFE_INTEGER, 2 ** 63, -1, 1e300),
                nasty,
              ),
            },
            { requiredKeys: [] },
          ),
          { maxLength: 4 },
        ),
        fc.jsonValue({ maxDepth: 2 }),
      ),
      customer_email: nasty,
      metadata: fc.oneof(
        fc.dictionary(nasty, nasty, { maxKeys: 4 }),
        fc.jsonValue({ maxDepth: 2 }),
      ),
      order_id: fc.oneof(fc.constantFrom(...ids.orders), nasty),
      payment_id: fc.oneof(fc.constantFrom(...ids.payments), nasty),
      payment_method: fc.oneof(fc.constantFrom("pm_card_visa", "pm_card_chargeDeclined"), nasty),
      amount: fc.oneof(fc.integer({ min: -5, max: 5000 }), fc.double(), nasty),
    },
    { requiredKeys: [] },
  );

/** A valid create body of some operation, with one field perhaps replaced by a nasty value. */
const nearlyValid = () =>
  fc
    .tuple(
      fc.constantFrom(
        {
          currency: "EUR",
          items: [{ sku: "SKU-1", name: "Lamp", quantity: 1, unit_amount: 1500 }],
          customer_email: "fuzz@example.com",
          metadata: { cart: "c1" },
        },
        { order_id: ids.orders[2] ?? "", payment_method: "pm_card_visa" },
        { payment_id: ids.payments[0] ?? "", amount: 1 },
      ),
      fc.option(
        fc.tuple(
          fc.constantFrom(
            "currency",
            "customer_email",
            "metadata",
            "items",
            "payment_method",
            "amount",
            "order_id",
            "extra",
          ),
          fc.oneof(nasty, fc.jsonValue({ maxDepth: 2 })),
        ),
        { freq: 2 },
      ),
    )
    .map(([body, change]) => JSON.stringify(change ? { ...body, [change[0]]: change[1] } : body));

const body$ = () =>
  fc.oneof(
    { weight: 4, arbitrary: nearlyValid() },
    { weight: 4, arbitrary: orderLike().map((value) => JSON.stringify(value)) },
    { weight: 2, arbitrary: fc.jsonValue({ maxDepth: 4 }).map((value) => JSON.stringify(value)) },
    { weight: 2, arbitrary: invalidUtf8 },
    { weight: 1, arbitrary: deep },
    { weight: 1, arbitrary: fc.string({ unit: "binary", maxLength: 200 }) },
    { weight: 1, arbitrary: fc.uint8Array({ maxLength: 200 }) },
    {
      weight: 1,
      arbitrary: fc
        .constantFrom(600 * 1024, 1024 * 1024 + 1)
        .map((size) => `{"currency":"EUR","metadata":{"k":"${"x".repeat(size)}"}}`),
    },
  );

const request$ = () =>
  fc.record({
    method: fc.oneof(
      { weight: 5, arbitrary: fc.constantFrom("GET", "POST") },
      { weight: 1, arbitrary: fc.constantFrom("PUT", "PATCH", "DELETE", "HEAD", "OPTIONS") },
    ),
    path: path$(),
    auth: fc.oneof(
      { weight: 14, arbitrary: fc.constant("valid") },
      { weight: 1, arbitrary: fc.constant("none") },
      { weight: 1, arbitrary: headerText.map((text) => `Bearer ${text}`) },
      { weight: 1, arbitrary: headerText },
    ),
    key: fc.oneof(
      { weight: 14, arbitrary: fc.constant("fresh") },
      { weight: 1, arbitrary: fc.constant("none") },
      { weight: 2, arbitrary: headerText },
    ),
    contentType: fc.oneof(
      { weight: 14, arbitrary: fc.constant("application/json") },
      {
        weight: 2,
        arbitrary: fc.constantFrom(
          "none",
          "text/plain",
          "application/merge-patch+json",
          "application/json; charset=latin1",
          "application/x-www-form-urlencoded",
        ),
      },
      { weight: 1, arbitrary: headerText },
    ),
    encoding: fc.oneof(
      { weight: 20, arbitrary: fc.constant("none") },
      {
        weight: 2,
        arbitrary: fc.constantFrom("gzip", "br", "deflate", "identity", "GZIP, identity"),
      },
      { weight: 1, arbitrary: headerText },
    ),
    extraHeaders: fc.dictionary(
      fc.constantFrom(
        "X-Forwarded-For",
        "Accept",
        "X-Request-Id",
        "Stripe-Signature",
        "Accept-Encoding",
      ),
      headerText,
      { maxKeys: 2 },
    ),
    body: fc.option(body$(), { freq: 4 }),
  });

describe("the HTTP surface under fuzzed requests", () => {
  it("never answers 5xx, always answers errors as documented problems, stores nothing it rejects", async () => {
    // Nothing else writes this tenant's rows and requests run one at a time, so the counts
    // after the last request that was not rejected are the counts before this one.
    let known = await rowCounts();
    await fc.assert(
      fc.asyncProperty(request$(), async (r) => {
        const headers: Record<string, string> = { ...r.extraHeaders };
        if (r.auth === "valid") headers.Authorization = `Bearer ${apiKey}`;
        else if (r.auth !== "none") headers.Authorization = r.auth;
        if (r.key === "fresh") headers["Idempotency-Key"] = newKey();
        else if (r.key !== "none") headers["Idempotency-Key"] = r.key;
        if (r.contentType !== "none") headers["Content-Type"] = r.contentType;
        if (r.encoding !== "none") headers["Content-Encoding"] = r.encoding;
        const body = r.method === "GET" || r.method === "HEAD" ? undefined : (r.body ?? undefined);
        const res = await send(r.method, r.path, { headers, body });
        await check(r.method, r.path, res);
        const counts = await rowCounts();
        if (REJECTIONS.has(res.status)) expect(counts, `${r.method} ${r.path}`).toEqual(known);
        known = counts;
        if (res.status === 405) expect(res.headers.get("allow")).toMatch(/^[A-Z]+(, [A-Z]+)*$/);
      }),
      { numRuns: RUNS, endOnFailure: true },
    );
  }, 180_000);

  it("never answers 5xx to a well-signed webhook, whatever its event holds", async () => {
    const intentLike = fc.record(
      {
        id: fc.oneof(fc.constantFrom("pi_1", "pi_fuzz_abc"), nasty, fc.jsonValue({ maxDepth: 1 })),
        object: fc.constant("payment_intent"),
        amount: fc.oneof(fc.constantFrom(1000, 1001), fc.integer(), nasty, fc.constant(null)),
        currency: fc.oneof(fc.constant("eur"), nasty),
        metadata: fc.oneof(
          fc.record(
            {
              tenant_id: fc.oneof(fc.constant(tenantId), nasty),
              payment_id: fc.oneof(fc.constantFrom(...ids.payments), nasty),
              order_id: fc.oneof(fc.constantFrom(...ids.orders), nasty),
            },
            { requiredKeys: [] },
          ),
          fc.jsonValue({ maxDepth: 2 }),
        ),
        last_payment_error: fc.oneof(
          fc.constant(null),
          fc.record({ code: nasty, decline_code: nasty, message: nasty }, { requiredKeys: [] }),
          fc.jsonValue({ maxDepth: 1 }),
        ),
      },
      { requiredKeys: [] },
    );
    const refundLike = fc.record(
      {
        id: fc.oneof(fc.constant("re_1"), nasty),
        status: fc.oneof(fc.constantFrom("succeeded", "failed", "pending", "canceled"), nasty),
        failure_reason: fc.oneof(fc.constant(null), nasty),
        metadata: fc.oneof(
          fc.record(
            {
              tenant_id: fc.oneof(fc.constant(tenantId), nasty),
              payment_id: fc.oneof(fc.constantFrom(...ids.payments), nasty),
              refund_id: fc.oneof(fc.constantFrom(...ids.refunds), nasty),
            },
            { requiredKeys: [] },
          ),
          fc.jsonValue({ maxDepth: 1 }),
        ),
      },
      { requiredKeys: [] },
    );
    const chargeLike = fc.record(
      {
        id: fc.oneof(fc.constant("ch_1"), nasty),
        payment_intent: fc.oneof(fc.constant("pi_1"), nasty, fc.constant(null)),
        refunds: fc.oneof(
          fc.record({ data: fc.array(fc.oneof(refundLike, fc.constant(null)), { maxLength: 3 }) }),
          fc.record({ data: fc.jsonValue({ maxDepth: 1 }) }),
          fc.constant(null),
        ),
      },
      { requiredKeys: [] },
    );
    const payment$ = fc.constantFrom(...recorded.payments);
    const refund$ = fc.constantFrom(...recorded.refunds);
    // Events that look like the provider's own for our records, some with one claim changed.
    const genuineIntentEvent$ = fc.record({
      id: fc.uuid().map((u) => `evt_${u.replaceAll("-", "")}`),
      type: fc.constantFrom("payment_intent.succeeded", "payment_intent.payment_failed"),
      data: fc
        .tuple(payment$, fc.boolean(), fc.boolean(), fc.boolean(), fc.constantFrom("eur", "usd"))
        .map(([p, sameIntent, sameAmount, sameTenant, currency]) => ({
          object: {
            id: sameIntent ? p.intentId : "pi_forged",
            object: "payment_intent",
            amount: sameAmount ? p.amount : p.amount + 1,
            currency,
            metadata: {
              tenant_id: sameTenant ? tenantId : "ten_someone_else",
              payment_id: p.id,
              order_id: p.orderId,
            },
          },
        })),
    });
    const genuineRefundEvent$ = fc.record({
      id: fc.uuid().map((u) => `evt_${u.replaceAll("-", "")}`),
      type: fc.constant("charge.refunded"),
      data: fc
        .tuple(
          refund$,
          fc.boolean(),
          fc.boolean(),
          fc.constantFrom("succeeded", "failed", "pending"),
        )
        .map(([r, sameIntent, sameRefund, status]) => {
          const payment = recorded.payments.find((p) => p.id === r.paymentId);
          return {
            object: {
              id: "ch_1",
              object: "charge",
              payment_intent: sameIntent ? payment?.intentId : "pi_forged",
              refunds: {
                data: [
                  {
                    id: sameRefund ? (r.providerRefundId ?? "re_1") : "re_forged",
                    status,
                    metadata: { tenant_id: tenantId, payment_id: r.paymentId, refund_id: r.id },
                  },
                ],
              },
            },
          };
        }),
    });
    const fuzzedEvent$ = fc.record({
      id: fc.oneof(
        fc.string({ unit: fc.constantFrom(..."abcdef0123_"), minLength: 1 }).map((s) => `evt_${s}`),
        nasty,
      ),
      object: fc.constant("event"),
      type: fc.oneof(
        fc.constantFrom(
          "payment_intent.succeeded",
          "payment_intent.payment_failed",
          "charge.refunded",
          "customer.created",
        ),
        nasty,
      ),
      data: fc.oneof(
        fc.record({ object: fc.oneof(intentLike, chargeLike) }),
        fc.jsonValue({ maxDepth: 2 }),
      ),
    });
    const event$ = fc.oneof(fuzzedEvent$, genuineIntentEvent$, genuineRefundEvent$);
    await fc.assert(
      fc.asyncProperty(event$, async (event) => {
        const payload = JSON.stringify(event);
        const signature = Stripe.webhooks.generateTestHeaderString({
          payload,
          secret: TEST_PROVIDER.webhookSecret,
        });
        const res = await send("POST", "/v1/webhooks/stripe", {
          headers: { "Content-Type": "application/json", "Stripe-Signature": signature },
          body: payload,
        });
        await check("POST", "/v1/webhooks/stripe", res);
        const result =
          res.status === 200
            ? ((await res.json()) as { result: string }).result
            : String(res.status);
        seen.webhookResults.set(result, (seen.webhookResults.get(result) ?? 0) + 1);
      }),
      { numRuns: WEBHOOK_RUNS, endOnFailure: true },
    );
    // Forged failures and successes never moved a recorded outcome.
    const statuses = await db.execute<{ status: string }>(sql`
      SELECT status FROM payments WHERE tenant_id = ${tenantId}
        AND id IN ${sql.raw(`(${recorded.payments.map((p) => `'${p.id}'`).join(", ")})`)}`);
    expect(statuses.map((p) => p.status)).toEqual(recorded.payments.map(() => "succeeded"));
  }, 120_000);

  it("leaves the server healthy, no record half-done, and no error line in the log", async () => {
    expect((await app.request("/healthz")).status).toBe(200);
    expect((await app.request("/readyz")).status).toBe(200);
    const order = await send("POST", "/v1/orders", {
      headers: json({ "Idempotency-Key": newKey() }),
      body: JSON.stringify({
        currency: "EUR",
        items: [{ sku: "after", name: "After", quantity: 1, unit_amount: 1 }],
      }),
    });
    expect(order.status).toBe(201);
    const [orphans] = await db.execute<{ items: number; started: number }>(sql`
      SELECT
        (SELECT count(*)::int FROM order_items i WHERE i.tenant_id = ${tenantId}
           AND NOT EXISTS (SELECT 1 FROM orders o WHERE o.tenant_id = i.tenant_id AND o.id = i.order_id)) AS items,
        (SELECT count(*)::int FROM idempotency_keys WHERE tenant_id = ${tenantId}
           AND response_status IS NULL) AS started`);
    expect(orphans).toEqual({ items: 0, started: 0 });
    const errors = output.map((line) => JSON.parse(line)).filter((entry) => entry.level >= 50);
    expect(errors).toEqual([]);
    expect(seen.requests).toBeGreaterThanOrEqual(RUNS + WEBHOOK_RUNS);
  });
});
