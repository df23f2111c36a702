import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import { createLogger } from "../src/logger.js";
import {
  apiClient,
  createTestTenant,
  newKey,
  ORDER_BODY,
  testApp,
  useDatabase,
} from "./helpers/harness.js";

/**
 * The request log as an operator reads it: pino's JSON lines captured through a destination
 * stream, one per request, with what identifies the request and never what would let a reader
 * act as the client (API key, idempotency key) or see its data (bodies).
 */
const { db } = useDatabase();

function loggedApp() {
  const output: string[] = [];
  const logger = createLogger("info", { write: (line: string) => void output.push(line) });
  const app = testApp(db, {}, { logger });
  const requestLines = () =>
    output.map((line) => JSON.parse(line)).filter((entry) => entry.msg === "request");
  return { app, output, requestLines };
}

const sha256Prefix = (text: string) => createHash("sha256").update(text).digest("hex").slice(0, 16);

describe("the request log", () => {
  it("writes one JSON line per request with id, tenant, route, status, duration and outcome", async () => {
    const { app, requestLines } = loggedApp();
    const { apiKey, tenant } = await createTestTenant(db, "log");
    const api = apiClient(app, apiKey);
    const key = newKey();
    const res = await api.post("/v1/orders", ORDER_BODY, { key });
    expect(res.status).toBe(201);
    const order = await res.json();

    expect(requestLines()).toEqual([
      {
        level: 30,
        time: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/),
        service: "idempotent-payments",
        request_id: res.headers.get("x-request-id"),
        tenant_id: tenant.id,
        method: "POST",
        route: "/v1/orders",
        status: 201,
        duration_ms: expect.any(Number),
        idempotency: "executed",
        idempotency_key_hash: sha256Prefix(key),
        msg: "request",
      },
    ]);

    await api.post("/v1/orders", ORDER_BODY, { key });
    await api.post("/v1/orders", { ...ORDER_BODY, currency: "USD" }, { key });
    await api.get(`/v1/orders/${order.id}`);
    const [, replay, mismatch, read] = requestLines();
    expect(replay).toMatchObject({ status: 201, idempotency: "replayed" });
    expect(mismatch).toMatchObject({ status: 422, idempotency: "mismatched" });
    expect(replay.idempotency_key_hash).toBe(sha256Prefix(key));
    // A read has a route pattern, not the order's id, and no idempotency fields.
    expect(read).toMatchObject({ method: "GET", route: "/v1/orders/:id", status: 200 });
    expect(read).not.toHaveProperty("idempotency");
    expect(read).not.toHaveProperty("idempotency_key_hash");
    expect(requestLines()).toHaveLength(4);
    expect(new Set(requestLines().map((line) => line.request_id)).size).toBe(4);
  });

  it("logs a rejected request without a tenant, and never the key it was sent with", async () => {
    const { app, output, requestLines } = loggedApp();
    const wrongKey = "sk_not_a_real_key_but_secret_looking_1234";
    const res = await apiClient(app, wrongKey).post("/v1/orders", ORDER_BODY);
    expect(res.status).toBe(401);
    const [line] = requestLines();
    expect(line).toMatchObject({ route: "/v1/orders", status: 401 });
    expect(line).not.toHaveProperty("tenant_id");
    expect(output.join("")).not.toContain(wrongKey);
  });

  it("never contains the API key, the raw idempotency key or any part of a body", async () => {
    const { app, output } = loggedApp();
    const { apiKey } = await createTestTenant(db, "log-secrets");
    const api = apiClient(app, apiKey);
    const key = `log-key-${newKey()}`;
    const body = {
      ...ORDER_BODY,
      customer_email: "only-in-the-body@example.com",
      metadata: { note: "body-marker-7f3a" },
    };
    await api.post("/v1/orders", body, { key });
    await api.post("/v1/orders", body, { key });
    await api.post("/v1/orders", { ...body, items: [] }, { key: newKey() });
    await api.post("/v1/orders", '{"currency":', { key: newKey() });

    const all = output.join("");
    expect(output.length).toBeGreaterThanOrEqual(4);
    for (const secret of [
      apiKey,
      key,
      "only-in-the-body@example.com",
      "body-marker-7f3a",
      "T-shirt",
      '{"currency":',
    ]) {
      expect(all).not.toContain(secret);
    }
    expect(all.toLowerCase()).not.toContain("bearer");
  });
});
