import { randomUUID } from "node:crypto";
import { eq } from "drizzle-orm";
import createClient from "openapi-fetch";
import { afterAll, beforeAll, describe, expect, expectTypeOf, inject, it } from "vitest";
// The client package's types: openapi-typescript's output for openapi.yaml, kept current by
// `npm run openapi` and checked by `npm run client:check`.
import type { components, paths } from "../client/src/generated/api.js";
import { orders } from "../src/db/schema.js";
import type { WRITE_ERRORS } from "../src/http/openapi.js";
import { createTestTenant, expectDocumented, tenantRows, useDatabase } from "./helpers/harness.js";
import { type ServerProcess, startServer } from "./helpers/server-process.js";

/**
 * A client generated from openapi.yaml alone (openapi-typescript types, openapi-fetch), driving
 * the whole order flow against a listening server. `npm run typecheck` compiles it, so a
 * document that stops describing these calls breaks the build, and every response is also
 * checked against the document.
 */
const { db } = useDatabase();
let server: ServerProcess;

beforeAll(async () => {
  server = await startServer({ DATABASE_URL: inject("databaseUrl") });
});
afterAll(async () => {
  await server?.kill("SIGTERM");
});

function client(apiKey: string) {
  const api = createClient<paths>({
    baseUrl: server.url,
    headers: { Authorization: `Bearer ${apiKey}` },
  });
  api.use({
    async onResponse({ request, response }) {
      const url = new URL(request.url);
      await expectDocumented(request.method, `${url.pathname}${url.search}`, response);
    },
  });
  return api;
}

const ORDER: components["schemas"]["CreateOrderRequest"] = {
  currency: "EUR",
  items: [
    { sku: "SKU-TSHIRT-M", name: "T-shirt, size M", quantity: 2, unit_amount: 1500 },
    { sku: "SKU-SOCKS", name: "Socks", quantity: 1, unit_amount: 500 },
  ],
  customer_email: "ada@example.com",
  metadata: { cart_id: "c_8812" },
};

describe("a client generated from openapi.yaml", () => {
  it("creates, retries, is refused a mismatched retry, gets, lists and cancels an order", async () => {
    const { apiKey, tenant } = await createTestTenant(db, "client");
    const api = client(apiKey);
    const key = randomUUID();
    const withKey = { header: { "Idempotency-Key": key } };

    const created = await api.POST("/v1/orders", { params: withKey, body: ORDER });
    expect(created.response.status).toBe(201);
    expect(created.response.headers.get("Idempotent-Replayed")).toBe("false");
    const order = created.data;
    if (!order) throw new Error(`create failed: ${JSON.stringify(created.error)}`);
    expect(order).toMatchObject({ object: "order", status: "pending", amount_total: 3500 });
    expect(created.response.headers.get("Location")).toBe(`/v1/orders/${order.id}`);

    const retried = await api.POST("/v1/orders", { params: withKey, body: ORDER });
    expect(retried.response.status).toBe(201);
    expect(retried.response.headers.get("Idempotent-Replayed")).toBe("true");
    expect(retried.data).toEqual(order);

    const mismatched = await api.POST("/v1/orders", {
      params: withKey,
      body: { ...ORDER, currency: "USD" },
    });
    expect(mismatched.response.status).toBe(422);
    expect(mismatched.data).toBeUndefined();
    // The generated error type names exactly the codes a write can answer.
    expectTypeOf<NonNullable<typeof mismatched.error>["code"]>().toEqualTypeOf<
      (typeof WRITE_ERRORS)[number]
    >();
    expect(mismatched.error).toMatchObject({ status: 422, code: "idempotency_key_reused" });

    const fetched = await api.GET("/v1/orders/{id}", { params: { path: { id: order.id } } });
    expect(fetched.response.status).toBe(200);
    expect(fetched.data).toEqual(order);

    const listed = await api.GET("/v1/orders", { params: { query: { limit: 10 } } });
    expect(listed.response.status).toBe(200);
    expect(listed.data).toEqual({ object: "list", data: [order], has_more: false });

    const cancelled = await api.POST("/v1/orders/{id}/cancel", {
      params: { path: { id: order.id }, header: { "Idempotency-Key": randomUUID() } },
    });
    expect(cancelled.response.status).toBe(200);
    expect(cancelled.response.headers.get("Idempotent-Replayed")).toBe("false");
    expect(cancelled.data).toEqual({
      ...order,
      status: "cancelled",
      updated_at: expect.any(String),
    });

    expect(await tenantRows(db, tenant.id)).toEqual({ orders: 1, items: 2, keys: 2 });
    const rows = await db
      .select({ id: orders.id, status: orders.status })
      .from(orders)
      .where(eq(orders.tenantId, tenant.id));
    expect(rows).toEqual([{ id: order.id, status: "cancelled" }]);
  });

  it("will not compile a write without its Idempotency-Key", () => {
    const api = client("sk_unused");
    // Never called: the point is that the compiler refuses it.
    const withoutKey = () =>
      // @ts-expect-error the Idempotency-Key header parameter is required
      api.POST("/v1/orders", { body: ORDER });
    expect(typeof withoutKey).toBe("function");
  });
});
