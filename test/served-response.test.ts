import { getRequestListener } from "@hono/node-server";
import { eq } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { idempotencyKeys } from "../src/db/schema.js";
import { stringBodyOf } from "../src/idempotency/middleware.js";
import {
  apiClient,
  createTestTenant,
  newKey,
  ORDER_BODY,
  tenantRows,
  testApp,
  useDatabase,
} from "./helpers/harness.js";
import { listen } from "./helpers/payments.js";

/**
 * Over real HTTP, @hono/node-server answers with its own lightweight `Response`, whose string
 * body the idempotency layer stores without reading it through a Fetch stream.
 */
const { db } = useDatabase();

describe("a response stored from @hono/node-server's lightweight Response", () => {
  it("is stored and sent byte for byte, and its replay is the same bytes", async () => {
    const server = await listen(testApp(db));
    try {
      const { apiKey, tenant } = await createTestTenant(db, "served");
      const api = apiClient(server.url, apiKey);
      const key = newKey();
      const first = await api.post("/v1/orders", ORDER_BODY, { key });
      expect(first.status).toBe(201);
      expect(first.headers.get("idempotent-replayed")).toBe("false");
      const firstText = await first.text();
      const order = JSON.parse(firstText);
      expect(order).toMatchObject({ currency: "EUR", amount_total: 3500, status: "pending" });
      expect(first.headers.get("location")).toBe(`/v1/orders/${order.id}`);

      const [record] = await db
        .select()
        .from(idempotencyKeys)
        .where(eq(idempotencyKeys.tenantId, tenant.id));
      expect(record?.responseBody).toBe(firstText);
      expect(record?.responseStatus).toBe(201);
      expect(record?.responseHeaders).toEqual({
        "content-type": "application/json",
        location: `/v1/orders/${order.id}`,
      });

      for (let i = 0; i < 2; i++) {
        const replay = await api.post("/v1/orders", ORDER_BODY, { key });
        expect(replay.status).toBe(201);
        expect(replay.headers.get("idempotent-replayed")).toBe("true");
        expect(await replay.text()).toBe(firstText);
      }
      expect(await tenantRows(db, tenant.id)).toEqual({ orders: 1, items: 2, keys: 1 });
    } finally {
      await server.close();
    }
  });

  it("is read in place only for a string body; anything else is left to text()", () => {
    // Making a listener installs @hono/node-server's Response as the global one.
    getRequestListener(() => new Response(null));
    expect(stringBodyOf(new Response('{"a":1}', { status: 201 }))).toBe('{"a":1}');
    expect(stringBodyOf(new Response(null, { status: 204 }))).toBeUndefined();
    const stream = new Blob(["x"]).stream();
    expect(stringBodyOf(new Response(stream))).toBeUndefined();
  });
});
