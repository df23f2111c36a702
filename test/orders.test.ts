import { sql } from "drizzle-orm";
import { beforeAll, describe, expect, it } from "vitest";
import { MAX_BODY_BYTES } from "../src/app.js";
import {
  apiClient,
  createTestTenant,
  expectedProblem,
  ORDER_BODY,
  tenantRows,
  testApp,
  useDatabase,
} from "./helpers/harness.js";

const { db } = useDatabase();
const app = testApp(db);
let tenant: { id: string };
let api: ReturnType<typeof apiClient>;

beforeAll(async () => {
  const created = await createTestTenant(db, "orders");
  tenant = created.tenant;
  api = apiClient(app, created.apiKey);
});

describe("POST /v1/orders", () => {
  it("creates a pending order whose total the server computes, with its items", async () => {
    const before = await tenantRows(db, tenant.id);
    const res = await api.post("/v1/orders", { ...ORDER_BODY, amount_total: undefined });
    expect(res.status).toBe(201);
    const order = await res.json();
    expect(order).toEqual({
      id: expect.stringMatching(/^ord_[0-9a-z]{26}$/),
      object: "order",
      status: "pending",
      currency: "EUR",
      amount_total: 3500,
      amount_refunded: 0,
      items: [
        { sku: "SKU-1", name: "T-shirt", quantity: 2, unit_amount: 1500, amount: 3000 },
        { sku: "SKU-2", name: "Socks", quantity: 1, unit_amount: 500, amount: 500 },
      ],
      customer_email: "ada@example.com",
      metadata: { cart: "c_1" },
      created_at: expect.any(String),
      updated_at: expect.any(String),
    });
    expect(res.headers.get("location")).toBe(`/v1/orders/${order.id}`);
    expect(await tenantRows(db, tenant.id)).toEqual({
      orders: before.orders + 1,
      items: before.items + 2,
      keys: before.keys + 1,
    });
    // Its timestamps are the transaction's now(), to the millisecond, as stored and as answered.
    const [stored] = await db.execute<{ created: string; updated: string; record: string }>(sql`
      SELECT to_json(o.created_at)#>>'{}' AS created, to_json(o.updated_at)#>>'{}' AS updated,
        to_json(date_trunc('milliseconds', r.created_at))#>>'{}' AS record
      FROM orders o JOIN idempotency_keys r ON r.tenant_id = o.tenant_id
        AND r.response_body LIKE '%' || o.id || '%'
      WHERE o.tenant_id = ${tenant.id} AND o.id = ${order.id}`);
    expect(new Date(stored?.created ?? "").toISOString()).toBe(order.created_at);
    expect(new Date(stored?.updated ?? "").toISOString()).toBe(order.updated_at);
    expect(new Date(stored?.record ?? "").toISOString()).toBe(order.created_at);
  });

  const valid = ORDER_BODY;
  const item = valid.items[0];
  describe.each([
    ["an unknown currency", { ...valid, currency: "XYZ" }, "json.currency"],
    ["a lower-case currency", { ...valid, currency: "eur" }, "json.currency"],
    ["no items", { ...valid, items: [] }, "json.items"],
    ["101 items", { ...valid, items: Array(101).fill(item) }, "json.items"],
    ["quantity 0", { ...valid, items: [{ ...item, quantity: 0 }] }, "json.items.0.quantity"],
    [
      "a fractional quantity",
      { ...valid, items: [{ ...item, quantity: 1.5 }] },
      "json.items.0.quantity",
    ],
    [
      "a negative amount",
      { ...valid, items: [{ ...item, unit_amount: -1 }] },
      "json.items.0.unit_amount",
    ],
    [
      "an amount as a string",
      { ...valid, items: [{ ...item, unit_amount: "100" }] },
      "json.items.0.unit_amount",
    ],
    [
      "an unsafe amount",
      { ...valid, items: [{ ...item, unit_amount: 2 ** 53 }] },
      "json.items.0.unit_amount",
    ],
    [
      "a total beyond 2^53 - 1",
      { ...valid, items: [{ ...item, quantity: 1000, unit_amount: 2 ** 50 }] },
      "json.items",
    ],
    ["a bad email", { ...valid, customer_email: "nope" }, "json.customer_email"],
    [
      "51 metadata keys",
      {
        ...valid,
        metadata: Object.fromEntries(Array.from({ length: 51 }, (_, i) => [`k${i}`, "v"])),
      },
      "json.metadata",
    ],
    ["a metadata number", { ...valid, metadata: { a: 1 } }, "json.metadata.a"],
    ["an unknown field", { ...valid, amount_total: 1 }, "json"],
    ["no currency", { items: valid.items }, "json.currency"],
  ])("rejects %s", (_label, body, path) => {
    it("with 400 validation_failed naming the field, and stores nothing", async () => {
      const before = await tenantRows(db, tenant.id);
      const res = await api.post("/v1/orders", body);
      expect(res.status).toBe(400);
      expect(res.headers.get("content-type")).toBe("application/problem+json");
      const body400 = await res.json();
      expect(body400).toEqual(
        expectedProblem("validation_failed", {
          errors: expect.arrayContaining([expect.objectContaining({ path })]),
        }),
      );
      expect(await tenantRows(db, tenant.id)).toEqual(before);
    });
  });

  it("answers 413 payload_too_large for a body over 1 MB and stores nothing", async () => {
    const before = await tenantRows(db, tenant.id);
    const big = { ...ORDER_BODY, metadata: { pad: "x".repeat(MAX_BODY_BYTES) } };
    const res = await api.post("/v1/orders", big);
    expect(res.status).toBe(413);
    expect(await res.json()).toEqual(expectedProblem("payload_too_large"));
    expect(await tenantRows(db, tenant.id)).toEqual(before);
  });

  it.each([
    ["a form body", "application/x-www-form-urlencoded", "currency=EUR"],
    ["a text body", "text/plain", JSON.stringify(ORDER_BODY)],
  ])("answers 415 unsupported_media_type for %s and stores nothing", async (_l, type, body) => {
    const before = await tenantRows(db, tenant.id);
    const res = await api.post("/v1/orders", body, { headers: { "Content-Type": type } });
    expect(res.status).toBe(415);
    expect(await res.json()).toEqual(expectedProblem("unsupported_media_type"));
    expect(await tenantRows(db, tenant.id)).toEqual(before);
  });

  it("answers 400 malformed_json for broken JSON and stores nothing", async () => {
    const before = await tenantRows(db, tenant.id);
    const res = await api.post("/v1/orders", '{"currency": "EUR",');
    expect(res.status).toBe(400);
    expect(await res.json()).toEqual(expectedProblem("malformed_json"));
    expect(await tenantRows(db, tenant.id)).toEqual(before);
  });

  it.each(["/v1/orders", "/v1/orders/ord_01aaaaaaaaaaaaaaaaaaaaaaaa"])(
    "answers 401 without a key and with an unknown key on GET %s",
    async (path) => {
      const none = await apiClient(app, null).get(path);
      expect(none.status).toBe(401);
      expect(none.headers.get("www-authenticate")).toBe('Bearer realm="api"');
      expect(await none.json()).toEqual(expectedProblem("authentication_required"));
      const wrong = await apiClient(app, "sk_not_a_real_key").get(path);
      expect(wrong.status).toBe(401);
      expect(wrong.headers.get("www-authenticate")).toContain('error="invalid_token"');
      expect(await wrong.json()).toEqual(expectedProblem("api_key_invalid"));
    },
  );
});

describe("GET /v1/orders/{id}", () => {
  it("returns the order as created", async () => {
    const created = await (await api.post("/v1/orders", ORDER_BODY)).json();
    const res = await api.get(`/v1/orders/${created.id}`);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual(created);
  });

  it("answers 404 order_not_found for another tenant's order", async () => {
    const created = await (await api.post("/v1/orders", ORDER_BODY)).json();
    const other = await createTestTenant(db, "other");
    const res = await apiClient(app, other.apiKey).get(`/v1/orders/${created.id}`);
    expect(res.status).toBe(404);
    expect(await res.json()).toEqual(expectedProblem("order_not_found"));
  });

  it("answers 400 validation_failed for a malformed id", async () => {
    const res = await api.get("/v1/orders/not-an-id");
    expect(res.status).toBe(400);
    expect(await res.json()).toEqual(
      expectedProblem("validation_failed", {
        errors: [{ path: "param.id", message: "is not an order id" }],
      }),
    );
  });
});

describe("GET /v1/orders", () => {
  it("pages through every order newest first without gaps or repeats", async () => {
    const { apiKey } = await createTestTenant(db, "list");
    const lister = apiClient(app, apiKey);
    const ids: string[] = [];
    for (let i = 0; i < 7; i++)
      ids.push((await (await lister.post("/v1/orders", ORDER_BODY)).json()).id);
    const seen: string[] = [];
    let cursor: string | undefined;
    let pages = 0;
    for (;;) {
      const res = await lister.get(
        `/v1/orders?limit=3${cursor ? `&starting_after=${cursor}` : ""}`,
      );
      expect(res.status).toBe(200);
      const page = await res.json();
      expect(page.object).toBe("list");
      seen.push(...page.data.map((o: { id: string }) => o.id));
      pages++;
      if (!page.has_more) break;
      cursor = page.data.at(-1).id;
    }
    expect(pages).toBe(3);
    expect(seen).toEqual([...ids].reverse());
  });

  it("defaults to 10 and rejects a limit outside 1-100", async () => {
    const { apiKey } = await createTestTenant(db, "limit");
    const lister = apiClient(app, apiKey);
    for (let i = 0; i < 11; i++) await lister.post("/v1/orders", ORDER_BODY);
    const page = await (await lister.get("/v1/orders")).json();
    expect(page.data).toHaveLength(10);
    expect(page.has_more).toBe(true);
    for (const limit of ["0", "101", "abc"]) {
      const res = await lister.get(`/v1/orders?limit=${limit}`);
      expect(res.status).toBe(400);
      expect((await res.json()).code).toBe("validation_failed");
    }
  });

  it("never lists another tenant's orders", async () => {
    const a = await createTestTenant(db, "a");
    const b = await createTestTenant(db, "b");
    await apiClient(app, a.apiKey).post("/v1/orders", ORDER_BODY);
    const page = await (await apiClient(app, b.apiKey).get("/v1/orders")).json();
    expect(page).toEqual({ object: "list", data: [], has_more: false });
  });
});

describe("POST /v1/orders/{id}/cancel", () => {
  it("cancels a pending order, without a body or content type", async () => {
    const created = await (await api.post("/v1/orders", ORDER_BODY)).json();
    const res = await api.post(`/v1/orders/${created.id}/cancel`);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({
      ...created,
      status: "cancelled",
      updated_at: expect.any(String),
    });
    expect((await (await api.get(`/v1/orders/${created.id}`)).json()).status).toBe("cancelled");
  });

  it("answers 409 order_not_cancellable for an order that is not pending", async () => {
    const created = await (await api.post("/v1/orders", ORDER_BODY)).json();
    await api.post(`/v1/orders/${created.id}/cancel`);
    const res = await api.post(`/v1/orders/${created.id}/cancel`);
    expect(res.status).toBe(409);
    expect(await res.json()).toEqual(
      expectedProblem("order_not_cancellable", {
        detail: "Only a pending order can be cancelled; this one is cancelled.",
      }),
    );
  });

  describe.each([
    ["no Idempotency-Key", 400, "idempotency_key_missing", { key: null }],
    ["no API key", 401, "authentication_required", { apiKey: null }],
    ["a text body", 415, "unsupported_media_type", { body: "please", type: "text/plain" }],
    [
      "a body over 1 MB",
      413,
      "payload_too_large",
      { body: JSON.stringify({ pad: "x".repeat(MAX_BODY_BYTES) }), type: "application/json" },
    ],
  ] as const)("rejects a cancel with %s", (_label, status, code, bad) => {
    it(`with ${status} ${code}, stores nothing and leaves the order pending`, async () => {
      const created = await (await api.post("/v1/orders", ORDER_BODY)).json();
      const before = await tenantRows(db, tenant.id);
      const client = "apiKey" in bad ? apiClient(app, bad.apiKey) : api;
      const res = await client.post(
        `/v1/orders/${created.id}/cancel`,
        "body" in bad ? bad.body : undefined,
        {
          ...("key" in bad ? { key: bad.key } : {}),
          headers: "type" in bad ? { "Content-Type": bad.type } : {},
        },
      );
      expect(res.status).toBe(status);
      expect(await res.json()).toEqual(expectedProblem(code));
      expect(await tenantRows(db, tenant.id)).toEqual(before);
      expect((await (await api.get(`/v1/orders/${created.id}`)).json()).status).toBe("pending");
    });
  });

  it("answers 404 order_not_found for another tenant's order and leaves it pending", async () => {
    const created = await (await api.post("/v1/orders", ORDER_BODY)).json();
    const other = await createTestTenant(db, "other");
    const res = await apiClient(app, other.apiKey).post(`/v1/orders/${created.id}/cancel`);
    expect(res.status).toBe(404);
    expect(await res.json()).toEqual(expectedProblem("order_not_found"));
    expect((await (await api.get(`/v1/orders/${created.id}`)).json()).status).toBe("pending");
  });
});
