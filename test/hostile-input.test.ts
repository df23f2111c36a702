import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { gzipSync } from "node:zlib";
import { sql } from "drizzle-orm";
import Stripe from "stripe";
import { beforeAll, describe, expect, it } from "vitest";
import { ConfigError, loadConfig } from "../src/config.js";
import { UNSTORABLE_TEXT_MESSAGE } from "../src/http/schemas.js";
import {
  apiClient,
  createTestTenant,
  expectedProblem,
  newKey,
  ORDER_BODY,
  TEST_PROVIDER,
  tenantRows,
  testApp,
  useDatabase,
} from "./helpers/harness.js";
import { REPO_ROOT } from "./helpers/server-process.js";

/** Input a client can send in JSON but PostgreSQL cannot store, and secrets it must not guess. */
const { db } = useDatabase();
const app = testApp(db);
let tenant: { id: string };
let api: ReturnType<typeof apiClient>;
let apiKey: string;

beforeAll(async () => {
  const created = await createTestTenant(db, "hostile");
  tenant = created.tenant;
  apiKey = created.apiKey;
  api = apiClient(app, created.apiKey);
});

const NUL = "a\u0000b";
const LONE_HIGH = "a\ud800b";
const LONE_LOW = "a\udc00b";
const item = ORDER_BODY.items[0];

describe.each([
  ["U+0000", NUL],
  ["a lone high surrogate", LONE_HIGH],
  ["a lone low surrogate", LONE_LOW],
])("text with %s", (_label, bad) => {
  it.each([
    ["an item sku", { ...ORDER_BODY, items: [{ ...item, sku: bad }] }, "json.items.0.sku"],
    ["an item name", { ...ORDER_BODY, items: [{ ...item, name: bad }] }, "json.items.0.name"],
    [
      "the customer email",
      { ...ORDER_BODY, customer_email: `${bad}@example.com` },
      "json.customer_email",
    ],
    ["a metadata value", { ...ORDER_BODY, metadata: { cart: bad } }, "json.metadata.cart"],
    ["a metadata key", { ...ORDER_BODY, metadata: { [bad]: "v" } }, `json.metadata.${bad}`],
  ])(
    "in %s is a 400 validation_failed naming it, and nothing is stored",
    async (_f, body, path) => {
      const before = await tenantRows(db, tenant.id);
      const res = await api.post("/v1/orders", body);
      expect(res.status).toBe(400);
      expect(res.headers.get("content-type")).toBe("application/problem+json");
      expect(await res.json()).toEqual(
        expectedProblem("validation_failed", {
          errors: expect.arrayContaining([expect.objectContaining({ path })]),
        }),
      );
      expect(await tenantRows(db, tenant.id)).toEqual(before);
    },
  );
});

it("names the reason for an unstorable item name", async () => {
  const before = await tenantRows(db, tenant.id);
  const res = await api.post("/v1/orders", { ...ORDER_BODY, items: [{ ...item, name: NUL }] });
  expect(await res.json()).toEqual(
    expectedProblem("validation_failed", {
      errors: [{ path: "json.items.0.name", message: UNSTORABLE_TEXT_MESSAGE }],
    }),
  );
  expect(await tenantRows(db, tenant.id)).toEqual(before);
});

it("accepts text with paired surrogates (an emoji) and stores it", async () => {
  const res = await api.post("/v1/orders", {
    ...ORDER_BODY,
    items: [{ ...item, name: "T-shirt \u{1F455}" }],
  });
  expect(res.status).toBe(201);
  expect((await res.json()).items[0].name).toBe("T-shirt \u{1F455}");
});

it("rejects an unstorable payment method with 400 validation_failed and stores nothing", async () => {
  const before = await tenantRows(db, tenant.id);
  const res = await api.post("/v1/payments", {
    order_id: "ord_01jdq3v6x6m7e9z5k2c8r4t1ya",
    payment_method: `pm_${NUL}`,
  });
  expect(res.status).toBe(400);
  expect(await res.json()).toEqual(
    expectedProblem("validation_failed", {
      errors: expect.arrayContaining([expect.objectContaining({ path: "json.payment_method" })]),
    }),
  );
  expect(await tenantRows(db, tenant.id)).toEqual(before);
});

describe("configuration", () => {
  it("refuses a Stripe secret key without STRIPE_WEBHOOK_SECRET, naming it", () => {
    expect(() => loadConfig({ STRIPE_SECRET_KEY: "sk_live_abc123" })).toThrow(ConfigError);
    expect(() => loadConfig({ STRIPE_SECRET_KEY: "sk_test_abc123" })).toThrow(
      /STRIPE_WEBHOOK_SECRET/,
    );
    expect(() =>
      loadConfig({ STRIPE_SECRET_KEY: "sk_live_abc123", STRIPE_WEBHOOK_SECRET: "" }),
    ).toThrow(/STRIPE_WEBHOOK_SECRET/);
  });

  it("stops the process at start when Stripe's key comes without its webhook secret", async () => {
    const { code, stderr } = await promisify(execFile)(
      process.execPath,
      ["--import", "tsx", "src/main.ts"],
      {
        cwd: REPO_ROOT,
        env: {
          ...process.env,
          STRIPE_SECRET_KEY: "sk_live_abc123",
          STRIPE_API_URL: "",
          STRIPE_WEBHOOK_SECRET: "",
        },
      },
    ).then(
      () => ({ code: 0, stderr: "" }),
      (error: { code: number; stderr: string }) => error,
    );
    expect(code).toBe(1);
    expect(stderr).toContain("Invalid configuration");
    expect(stderr).toContain("STRIPE_WEBHOOK_SECRET");
  });

  it("accepts a Stripe secret key with its webhook secret", () => {
    const config = loadConfig({
      STRIPE_SECRET_KEY: "sk_live_abc123",
      STRIPE_WEBHOOK_SECRET: "whsec_real",
    });
    expect(config.STRIPE_WEBHOOK_SECRET).toBe("whsec_real");
  });

  it("keeps the simulator's default secret for the bundled and a Stripe-compatible simulator", () => {
    expect(loadConfig({}).STRIPE_WEBHOOK_SECRET).toBe("whsec_local_simulator_secret");
    expect(
      loadConfig({ STRIPE_SECRET_KEY: "sk_test_sim", STRIPE_API_URL: "http://sim:12111" })
        .STRIPE_WEBHOOK_SECRET,
    ).toBe("whsec_local_simulator_secret");
  });
});

describe("webhook signatures", () => {
  async function deliver(timestamp: number, id: string) {
    const payload = JSON.stringify({
      id,
      object: "event",
      type: "payment_intent.succeeded",
      data: {
        object: {
          id: "pi_future",
          object: "payment_intent",
          amount: 100,
          currency: "eur",
          metadata: {},
        },
      },
    });
    const signature = Stripe.webhooks.generateTestHeaderString({
      payload,
      secret: TEST_PROVIDER.webhookSecret,
      timestamp,
    });
    return apiClient(app, null).post("/v1/webhooks/stripe", payload, {
      key: null,
      headers: { "Stripe-Signature": signature },
    });
  }

  async function applied(id: string) {
    const [row] = await db.execute<{ n: number }>(
      sql`SELECT count(*)::int AS n FROM webhook_events WHERE event_id = ${id}`,
    );
    return row?.n;
  }

  it("rejects a signature dated beyond the tolerance in the future, applying nothing", async () => {
    const now = Math.floor(Date.now() / 1000);
    const res = await deliver(now + 60 * 60, "evt_future_hostile");
    expect(res.status).toBe(400);
    expect(await res.json()).toEqual(expectedProblem("webhook_signature_invalid"));
    expect(await applied("evt_future_hostile")).toBe(0);
  });

  it("rejects one dated beyond the tolerance in the past too", async () => {
    const now = Math.floor(Date.now() / 1000);
    const res = await deliver(now - 60 * 60, "evt_past_hostile");
    expect(res.status).toBe(400);
    expect(await applied("evt_past_hostile")).toBe(0);
  });

  it("accepts one dated a little ahead, as clocks drift", async () => {
    const now = Math.floor(Date.now() / 1000);
    const res = await deliver(now + 5, "evt_near_hostile");
    expect(res.status).toBe(200);
  });
});

describe("bodies that would be repaired or misread", () => {
  const order = JSON.stringify(ORDER_BODY);
  const invalidUtf8 = Buffer.concat([
    Buffer.from(order.slice(0, -2)),
    Buffer.from([0xff, 0xfe]),
    Buffer.from('"}'),
  ]);
  const deep = `{"currency":"EUR","items":${"[".repeat(50_000)}${"]".repeat(50_000)}}`;

  it.each<[string, Buffer | string, Record<string, string>, ReturnType<typeof expectedProblem>]>([
    ["bytes that are not UTF-8", invalidUtf8, {}, expectedProblem("invalid_utf8")],
    [
      "a CESU-8 encoded surrogate",
      Buffer.concat([
        Buffer.from('{"currency":"EUR","note":"'),
        Buffer.from([0xed, 0xa0, 0x80, 0x22, 0x7d]),
      ]),
      {},
      expectedProblem("invalid_utf8"),
    ],
    [
      "a gzip-compressed body",
      gzipSync(order),
      { "Content-Encoding": "gzip" },
      expectedProblem("content_encoding_unsupported"),
    ],
    [
      "an unknown encoding",
      order,
      { "Content-Encoding": "br" },
      expectedProblem("content_encoding_unsupported"),
    ],
    ["JSON nested 50,000 deep", deep, {}, expectedProblem("json_too_deep")],
    [
      "a number beyond double range",
      order.replace('"unit_amount":1500', '"unit_amount":1e400'),
      {},
      expectedProblem("validation_failed", {
        errors: [{ path: "json.items.0.unit_amount", message: expect.any(String) }],
      }),
    ],
  ])(
    "answers %s with the whole problem and stores nothing",
    async (_label, body, headers, problem) => {
      const before = await tenantRows(db, tenant.id);
      const res = await app.request("/v1/orders", {
        method: "POST",
        headers: {
          Authorization: `Bearer ${apiKey}`,
          "Idempotency-Key": newKey(),
          "Content-Type": "application/json",
          "Content-Length": String(Buffer.byteLength(body)),
          ...headers,
        },
        body,
      });
      expect(res.headers.get("content-type")).toBe("application/problem+json");
      expect(await res.json()).toEqual(problem);
      expect(res.status).toBe(problem.status);
      expect(await tenantRows(db, tenant.id)).toEqual(before);
    },
  );

  it("accepts `Content-Encoding: identity`, which is no encoding", async () => {
    const res = await api.post("/v1/orders", ORDER_BODY, {
      headers: { "Content-Encoding": "identity" },
    });
    expect(res.status).toBe(201);
  });
});

describe("methods a path does not serve", () => {
  it.each([
    ["PUT", "/v1/orders", "GET, HEAD, POST"],
    ["DELETE", "/v1/orders/ord_01jdq3v6x6m7e9z5k2c8r4t1ya", "GET, HEAD"],
    ["GET", "/v1/orders/ord_01jdq3v6x6m7e9z5k2c8r4t1ya/cancel", "POST"],
    ["PATCH", "/v1/payments", "POST"],
  ])("%s %s is a 405 with Allow: %s", async (method, path, allow) => {
    const before = await tenantRows(db, tenant.id);
    const res = await app.request(path, { method, headers: { Authorization: `Bearer ${apiKey}` } });
    expect(res.status).toBe(405);
    expect(res.headers.get("allow")).toBe(allow);
    expect(await res.json()).toEqual(expectedProblem("method_not_allowed"));
    expect(await tenantRows(db, tenant.id)).toEqual(before);
  });

  it("keeps 404 for a path no route serves", async () => {
    const res = await app.request("/v1/nothing", { method: "PUT" });
    expect(await res.json()).toEqual(expectedProblem("route_not_found"));
  });
});

describe("signed webhook events of unexpected shapes", () => {
  function signed(event: unknown) {
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
  const refundsOf = (data: unknown, metadata: Record<string, string> = {}) => ({
    id: "evt_shape_refunds",
    object: "event",
    type: "charge.refunded",
    data: { object: { id: "ch_1", object: "charge", refunds: { data }, metadata } },
  });
  const intentWith = (metadata: Record<string, string>) => ({
    id: "evt_shape_intent",
    object: "event",
    type: "payment_intent.succeeded",
    data: { object: { id: "pi_1", amount: 100, currency: "eur", metadata } },
  });

  it.each<[string, unknown, string]>([
    [
      "refunds.data that is not a list",
      refundsOf({ not: "a list" }),
      "json.data.object.refunds.data",
    ],
    ["refunds.data holding null", refundsOf([null]), "json.data.object.refunds.data.0"],
    [
      "U+0000 in a refund's metadata",
      refundsOf([{ id: "re_1", status: "succeeded", metadata: { refund_id: NUL } }]),
      "json.data.object.refunds.data.0.metadata.refund_id",
    ],
    [
      "U+0000 in an intent's metadata",
      intentWith({ tenant_id: NUL }),
      "json.data.object.metadata.tenant_id",
    ],
    [
      "an intent without an amount",
      { ...intentWith({}), data: { object: { id: "pi_1", currency: "eur", metadata: {} } } },
      "json.data.object.amount",
    ],
  ])(
    "answers %s with 400 validation_failed naming it, recording nothing",
    async (_l, event, path) => {
      const res = await signed(event);
      expect(res.status).toBe(400);
      expect(await res.json()).toEqual(
        expectedProblem("validation_failed", {
          errors: expect.arrayContaining([expect.objectContaining({ path })]),
        }),
      );
      const [row] = await db.execute<{ n: number }>(
        sql`SELECT count(*)::int AS n FROM webhook_events WHERE event_id LIKE 'evt_shape_%'`,
      );
      expect(row?.n).toBe(0);
    },
  );

  it("acknowledges an event type it does not handle as ignored, whatever its object holds", async () => {
    const res = await signed({ id: "evt_other", type: "customer.created", data: { object: {} } });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ received: true, result: "ignored" });
  });
});
