import { setTimeout as sleep } from "node:timers/promises";
import { and, eq } from "drizzle-orm";
import { beforeEach, describe, expect, it } from "vitest";
import { MAX_BODY_BYTES } from "../src/app.js";
import { idempotencyKeys } from "../src/db/schema.js";
import { transactionEndingWith } from "../src/idempotency/database.js";
import { claimKey, saveFinishedRecord } from "../src/idempotency/store.js";
import { newId } from "../src/ids.js";
import {
  apiClient,
  createTestTenant,
  expectedProblem,
  newKey,
  ORDER_BODY,
  tenantRows,
  testApp,
  useDatabase,
} from "./helpers/harness.js";

/**
 * The decision table of docs/idempotency.md, row by row, through the real order routes: each test asserts the answer
 * (status, whole body, headers) and what the database holds afterwards.
 */
const { db } = useDatabase();
const app = testApp(db);
let tenantId: string;
let api: ReturnType<typeof apiClient>;

beforeEach(async () => {
  const created = await createTestTenant(db, "idem");
  tenantId = created.tenant.id;
  api = apiClient(app, created.apiKey);
});

async function storedRecord(key: string) {
  const [record] = await db
    .select()
    .from(idempotencyKeys)
    .where(and(eq(idempotencyKeys.tenantId, tenantId), eq(idempotencyKeys.key, key)));
  return record;
}

describe("a POST without a usable key", () => {
  it("answers 400 idempotency_key_missing and stores nothing", async () => {
    const res = await api.post("/v1/orders", ORDER_BODY, { key: null });
    expect(res.status).toBe(400);
    expect(res.headers.get("idempotent-replayed")).toBeNull();
    expect(await res.json()).toEqual(expectedProblem("idempotency_key_missing"));
    expect(await tenantRows(db, tenantId)).toEqual({ orders: 0, items: 0, keys: 0 });
  });

  it.each([
    ["too short", "short-key"],
    ["too long", "k".repeat(256)],
    ["a forbidden character", "has spaces in it, too"],
    ["several values", "aaaaaaaaaaaaaaaa, bbbbbbbbbbbbbbbb"],
  ])("answers 400 idempotency_key_invalid for a key %s and stores nothing", async (_l, key) => {
    const res = await api.post("/v1/orders", ORDER_BODY, { key });
    expect(res.status).toBe(400);
    expect(await res.json()).toEqual(expectedProblem("idempotency_key_invalid"));
    expect(await tenantRows(db, tenantId)).toEqual({ orders: 0, items: 0, keys: 0 });
  });
});

describe("the first request with a key", () => {
  it("executes, says Idempotent-Replayed: false, and stores its response with its writes", async () => {
    const key = newKey();
    const res = await api.post("/v1/orders", ORDER_BODY, { key });
    expect(res.status).toBe(201);
    expect(res.headers.get("idempotent-replayed")).toBe("false");
    const text = await res.text();
    const order = JSON.parse(text);
    const record = await storedRecord(key);
    expect(record).toMatchObject({
      recoveryPoint: "finished",
      method: "POST",
      path: "/v1/orders",
      responseStatus: 201,
      responseBody: text,
      responseHeaders: { "content-type": "application/json", location: `/v1/orders/${order.id}` },
      lockedUntil: null,
    });
    expect(record?.fingerprint).toMatch(/^[0-9a-f]{64}$/);
    expect(await tenantRows(db, tenantId)).toEqual({ orders: 1, items: 2, keys: 1 });
  });
});

describe("a retry with the same key and the same request", () => {
  it("gets the stored response byte for byte, with Idempotent-Replayed: true, and writes nothing", async () => {
    const key = newKey();
    const first = await api.post("/v1/orders", ORDER_BODY, { key });
    const firstText = await first.text();
    // Same request: other key order and whitespace do not make it different.
    const reordered = `{ "metadata": {"cart":"c_1"}, "customer_email":"ada@example.com",
      "items": ${JSON.stringify(ORDER_BODY.items)}, "currency": "EUR" }`;
    const retry = await api.post("/v1/orders", reordered, { key });
    expect(retry.status).toBe(201);
    expect(retry.headers.get("idempotent-replayed")).toBe("true");
    expect(retry.headers.get("content-type")).toBe(first.headers.get("content-type"));
    expect(retry.headers.get("location")).toBe(first.headers.get("location"));
    expect(await retry.text()).toBe(firstText);
    expect(await tenantRows(db, tenantId)).toEqual({ orders: 1, items: 2, keys: 1 });
  });

  it("accepts the key as a Structured Field string and as a bare token alike", async () => {
    const key = newKey();
    const bare = await api.post("/v1/orders", ORDER_BODY, { key });
    const quoted = await api.post("/v1/orders", ORDER_BODY, { key: `"${key}"` });
    expect(quoted.status).toBe(201);
    expect(quoted.headers.get("idempotent-replayed")).toBe("true");
    expect(await quoted.text()).toBe(await bare.text());
    expect(await tenantRows(db, tenantId)).toEqual({ orders: 1, items: 2, keys: 1 });
  });
});

describe("a key sent as a Structured Field string", () => {
  it("executes the first request and replays to the bare form of the same key", async () => {
    const key = newKey();
    const quoted = await api.post("/v1/orders", ORDER_BODY, { key: `"${key}"` });
    expect(quoted.status).toBe(201);
    expect(quoted.headers.get("idempotent-replayed")).toBe("false");
    const bare = await api.post("/v1/orders", ORDER_BODY, { key });
    expect(bare.headers.get("idempotent-replayed")).toBe("true");
    expect(await bare.text()).toBe(await quoted.text());
    expect((await storedRecord(key))?.responseStatus).toBe(201);
    expect(await tenantRows(db, tenantId)).toEqual({ orders: 1, items: 2, keys: 1 });
  });
});

describe("the same key with a different request", () => {
  it.each([
    ["another body", "/v1/orders", { ...ORDER_BODY, currency: "USD" }],
    ["another value deep inside", "/v1/orders", { ...ORDER_BODY, metadata: { cart: "c_2" } }],
  ])("answers 422 idempotency_key_reused for %s and stores nothing new", async (_l, path, body) => {
    const key = newKey();
    await api.post("/v1/orders", ORDER_BODY, { key });
    const before = await storedRecord(key);
    const res = await api.post(path, body, { key });
    expect(res.status).toBe(422);
    expect(res.headers.get("idempotent-replayed")).toBeNull();
    expect(await res.json()).toEqual(expectedProblem("idempotency_key_reused"));
    expect(await storedRecord(key)).toEqual(before);
    expect(await tenantRows(db, tenantId)).toEqual({ orders: 1, items: 2, keys: 1 });
  });

  it("answers 422 for another path (cancel) under a key used to create", async () => {
    const key = newKey();
    const order = await (await api.post("/v1/orders", ORDER_BODY, { key })).json();
    const res = await api.post(`/v1/orders/${order.id}/cancel`, undefined, { key });
    expect(res.status).toBe(422);
    expect(await res.json()).toEqual(expectedProblem("idempotency_key_reused"));
    expect((await (await api.get(`/v1/orders/${order.id}`)).json()).status).toBe("pending");
  });
});

describe("the same key from another tenant", () => {
  it("is an unrelated key: the request executes for that tenant", async () => {
    const key = newKey();
    const mine = await (await api.post("/v1/orders", ORDER_BODY, { key })).json();
    const other = await createTestTenant(db, "other");
    const res = await apiClient(app, other.apiKey).post("/v1/orders", ORDER_BODY, { key });
    expect(res.status).toBe(201);
    expect(res.headers.get("idempotent-replayed")).toBe("false");
    expect((await res.json()).id).not.toBe(mine.id);
    expect(await tenantRows(db, tenantId)).toEqual({ orders: 1, items: 2, keys: 1 });
    expect(await tenantRows(db, other.tenant.id)).toEqual({ orders: 1, items: 2, keys: 1 });
  });
});

describe("a request rejected before the handler", () => {
  it.each([
    ["401 (unknown API key)", 401, { apiKey: "sk_wrong" }],
    ["400 (malformed JSON)", 400, { body: '{"currency":' }],
    ["400 (schema)", 400, { body: { ...ORDER_BODY, items: [] } }],
    [
      "413 (body over 1 MB)",
      413,
      { body: { ...ORDER_BODY, metadata: { p: "x".repeat(MAX_BODY_BYTES) } } },
    ],
    ["415 (not JSON)", 415, { body: "currency=EUR", type: "application/x-www-form-urlencoded" }],
  ] as const)(
    "stores nothing on %s: the fixed retry with the same key executes",
    async (_l, status, bad) => {
      const key = newKey();
      const client = "apiKey" in bad ? apiClient(app, bad.apiKey) : api;
      const rejected = await client.post("/v1/orders", "body" in bad ? bad.body : ORDER_BODY, {
        key,
        headers: "type" in bad ? { "Content-Type": bad.type } : {},
      });
      expect(rejected.status).toBe(status);
      expect(rejected.headers.get("idempotent-replayed")).toBeNull();
      expect(await tenantRows(db, tenantId)).toEqual({ orders: 0, items: 0, keys: 0 });

      const fixed = await api.post("/v1/orders", ORDER_BODY, { key });
      expect(fixed.status).toBe(201);
      expect(fixed.headers.get("idempotent-replayed")).toBe("false");
      expect(await tenantRows(db, tenantId)).toEqual({ orders: 1, items: 2, keys: 1 });
    },
  );
});

describe("a business outcome of the handler", () => {
  it("stores a 404 and replays it", async () => {
    const key = newKey();
    const missing = "/v1/orders/ord_01aaaaaaaaaaaaaaaaaaaaaaaa/cancel";
    const first = await api.post(missing, undefined, { key });
    expect(first.status).toBe(404);
    expect(first.headers.get("idempotent-replayed")).toBe("false");
    const firstBody = await first.text();
    expect(JSON.parse(firstBody)).toEqual(expectedProblem("order_not_found"));
    const retry = await api.post(missing, undefined, { key });
    expect(retry.status).toBe(404);
    expect(retry.headers.get("idempotent-replayed")).toBe("true");
    expect(retry.headers.get("content-type")).toBe("application/problem+json");
    expect(await retry.text()).toBe(firstBody);
    expect((await storedRecord(key))?.responseStatus).toBe(404);
  });

  it("stores a 409 conflict, which a later retry replays even though the cause is gone", async () => {
    const order = await (await api.post("/v1/orders", ORDER_BODY)).json();
    await api.post(`/v1/orders/${order.id}/cancel`);
    const key = newKey();
    const first = await api.post(`/v1/orders/${order.id}/cancel`, undefined, { key });
    expect(first.status).toBe(409);
    const retry = await api.post(`/v1/orders/${order.id}/cancel`, undefined, { key });
    expect(retry.status).toBe(409);
    expect(retry.headers.get("idempotent-replayed")).toBe("true");
    expect(await retry.text()).toBe(await first.text());
    expect(await tenantRows(db, tenantId)).toEqual({ orders: 1, items: 2, keys: 3 });
  });

  it("replays a cancel's 200 without cancelling twice", async () => {
    const order = await (await api.post("/v1/orders", ORDER_BODY)).json();
    const key = newKey();
    const first = await api.post(`/v1/orders/${order.id}/cancel`, undefined, { key });
    const retry = await api.post(`/v1/orders/${order.id}/cancel`, undefined, { key });
    expect([first.status, retry.status]).toEqual([200, 200]);
    expect(retry.headers.get("idempotent-replayed")).toBe("true");
    expect(await retry.text()).toBe(await first.text());
  });
});

describe("a record past its expires_at", () => {
  it("is treated as new even before cleanup deleted it", async () => {
    const shortLived = testApp(db, { IDEMPOTENCY_TTL_MS: 1000 });
    const { apiKey, tenant } = await createTestTenant(db, "ttl");
    const client = apiClient(shortLived, apiKey);
    const key = newKey();
    const first = await (await client.post("/v1/orders", ORDER_BODY, { key })).json();
    const [recordBefore] = await db
      .select()
      .from(idempotencyKeys)
      .where(eq(idempotencyKeys.tenantId, tenant.id));
    if (!recordBefore) throw new Error("no record stored");
    const lifetime = recordBefore.expiresAt.getTime() - recordBefore.createdAt.getTime();
    expect(lifetime).toBeGreaterThanOrEqual(999);
    expect(lifetime).toBeLessThan(1100);

    const early = await client.post("/v1/orders", ORDER_BODY, { key });
    expect(early.headers.get("idempotent-replayed")).toBe("true");

    await sleep(1100);
    const late = await client.post("/v1/orders", ORDER_BODY, { key });
    expect(late.status).toBe(201);
    expect(late.headers.get("idempotent-replayed")).toBe("false");
    const second = await late.json();
    expect(second.id).not.toBe(first.id);
    const after = await tenantRows(db, tenant.id);
    expect(after).toEqual({ orders: 2, items: 4, keys: 1 });
    const [record] = await db
      .select()
      .from(idempotencyKeys)
      .where(eq(idempotencyKeys.tenantId, tenant.id));
    expect(record?.recordId).not.toBe(recordBefore.recordId);
    expect(JSON.parse(record?.responseBody ?? "{}").id).toBe(second.id);
  });
});

describe("the finished record, with COMMIT sent right behind it", () => {
  it("fails the whole transaction over a live record, with the record's own error", async () => {
    const live = newKey();
    expect((await api.post("/v1/orders", ORDER_BODY, { key: live })).status).toBe(201);
    const liveBefore = await storedRecord(live);
    const fresh = newKey();
    const keyed = (key: string) => ({
      tenantId,
      key,
      fingerprint: "f",
      method: "POST",
      path: "/v1/orders",
    });
    const response = { status: 201, headers: {}, body: "{}" };
    // A caller's bug: the live key was never claimed. The fresh key's writes come first; the
    // live key's record write goes out with COMMIT, and nothing looks at it before COMMIT.
    const sent = transactionEndingWith(db, async (tx, endWith) => {
      await claimKey(tx, keyed(fresh), 1000);
      await saveFinishedRecord(tx, keyed(fresh), response, 60_000, newId("idk"));
      endWith(saveFinishedRecord(tx, keyed(live), response, 60_000, newId("idk")));
    });
    await expect(sent).rejects.toThrow(`idempotency record ${live} exists and is live`);
    expect(await storedRecord(fresh)).toBeUndefined();
    expect(await storedRecord(live)).toEqual(liveBefore);
    expect(await tenantRows(db, tenantId)).toEqual({ orders: 1, items: 2, keys: 1 });
  });
});
